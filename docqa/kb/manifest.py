"""The KB manifest: the one file that says which generation is current.

Every commit writes a complete new generation directory first and then replaces manifest.json
atomically (write to a temp file, fsync, rename, fsync the directory). A crash at any point leaves
either the old manifest (and the old, untouched generation) or the new one.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from docqa.errors import UserError

if TYPE_CHECKING:
    from docqa.settings import Settings

FORMAT_VERSION = 2  # 2: a generation is a list of segments (docqa/kb/store.py); 1: one store and one index
MANIFEST = "manifest.json"
SEGMENTS = "segments"  # the folder of a generation's segment files
_GEN = re.compile(r"gen-(\d{6,})")
_SEGMENT = re.compile(r"s\d{6,}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KBError(UserError):
    """A knowledge-base level problem the user can act on (unknown KB, bad name, locked...)."""


class KBNotFound(KBError):
    """No KB of that name: neither a manifest nor any generation on disk."""


class KBBusy(KBError):
    """Another writer holds the KB's write lock (HTTP 409: try again when it has finished)."""


class KBDamaged(KBError):
    """The KB exists but cannot be read: unreadable manifest, missing or damaged generation files.
    The message says what is wrong and how to recover (``docqa repair``)."""


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):  # fullmatch: "$" alone would let a trailing newline through
        raise KBError(f"invalid KB name {name!r}: use 1-64 letters, digits, '_', '-', '.', starting with a letter "
                      "or digit")
    return name


def read_manifest(kb_dir: Path) -> dict:
    """The manifest of the KB in ``kb_dir``: ``KBNotFound`` when there is no such KB, ``KBDamaged``
    (one line, with the way out) for anything else that stops it being read."""
    path = kb_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        gens = generations_on_disk(kb_dir)
        if gens:
            raise KBDamaged(f"{MANIFEST} of knowledge base {kb_dir.name!r} is missing, but its data is on disk "
                            f"({gen_dir(kb_dir, gens[-1]).name}){_repair_hint(kb_dir)}") from None
        raise KBNotFound(f"knowledge base {kb_dir.name!r} not found under {kb_dir.parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KBDamaged(f"manifest of {kb_dir.name!r} is unreadable: {e}{_repair_hint(kb_dir)}") from None
    except OSError as e:
        raise KBDamaged(f"manifest of {kb_dir.name!r} cannot be read: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise KBDamaged(f"manifest of {kb_dir.name!r} is unreadable: a JSON {type(data).__name__}, not an object"
                        f"{_repair_hint(kb_dir)}")
    gen = data.get("generation", 0)
    if not isinstance(gen, int) or isinstance(gen, bool) or gen < 0:
        raise KBDamaged(f"manifest of {kb_dir.name!r} is unreadable: generation {gen!r} is not a whole number"
                        f"{_repair_hint(kb_dir)}")
    version = data.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise KBDamaged(f"manifest of {kb_dir.name!r} is unreadable: format_version {version!r}{_repair_hint(kb_dir)}")
    if version > FORMAT_VERSION:
        raise KBDamaged(f"KB {kb_dir.name!r} was written by a newer docqa (format {version}); upgrade docqa")
    if not isinstance(data.get("build", {}), dict):
        raise KBDamaged(f"manifest of {kb_dir.name!r} is unreadable: 'build' is not an object{_repair_hint(kb_dir)}")
    return data


def built_settings(settings: Settings, manifest: dict, kb_dir: Path) -> Settings:
    """``settings`` with the KB's recorded build settings laid over them; a recorded value that no setting
    accepts (a damaged manifest: ``vector_index: "flat_f+16"``) is ``KBDamaged``, not a validation trace."""
    from pydantic import ValidationError

    try:
        return settings.with_build(manifest.get("build", {}))
    except ValidationError as e:
        err = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in err.get("loc", ())) or "?"
        raise KBDamaged(f"manifest of {kb_dir.name!r} records a build setting docqa cannot use: {where} = "
                        f"{err.get('input')!r} ({err.get('msg', e)}){_repair_hint(kb_dir)}") from None


def _repair_hint(kb_dir: Path) -> str:
    return f"; run `docqa repair --kb {kb_dir.name}` to find the newest complete generation"


def generations_on_disk(kb_dir: Path) -> list[int]:
    """Generation numbers of the ``gen-NNNNNN`` folders in ``kb_dir`` that hold a store, oldest first."""
    out = []
    try:
        entries = list(kb_dir.glob("gen-*"))
    except OSError:
        return []
    for p in entries:
        m = _GEN.fullmatch(p.name)
        if m and ((p / "store.sqlite").is_file() or (p / SEGMENTS).is_dir()):
            out.append(int(m.group(1)))
    return sorted(out)


def write_manifest(kb_dir: Path, data: dict) -> None:
    path = kb_dir / MANIFEST
    tmp = kb_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(kb_dir)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as another name of the committed, never rewritten file ``src`` (a copy where links fail):
    how a generation shares what did not change with the one before."""
    try:
        os.link(src, dst)
    except OSError:
        import shutil

        shutil.copy2(src, dst)


def gen_dir(kb_dir: Path, generation: int) -> Path:
    return kb_dir / f"gen-{generation:06d}"


def segment_name(generation: int) -> str:
    """The name of the segment the commit of ``generation`` writes (its files: <name>.sqlite, <name>.faiss)."""
    return f"s{generation:06d}"


def segment_files(gdir: Path, record: dict) -> list[tuple[str, Path, Path]]:
    """``(name, store, vectors)`` of each segment of the generation in ``gdir``, oldest first, as its manifest
    (or generation.json) ``record`` lists them; a generation written before segments (format 1) is one
    segment: its ``store.sqlite`` and ``vectors.faiss``."""
    names = record.get("segments")
    if names is None:
        return [("store", gdir / "store.sqlite", gdir / "vectors.faiss")]
    if not isinstance(names, list) or not all(isinstance(n, str) and _SEGMENT.fullmatch(n) for n in names) \
            or len(set(names)) != len(names):
        raise KBDamaged(f"the manifest of knowledge base {gdir.parent.name!r} lists segments {names!r}, which are "
                        f"not segment names{_repair_hint(gdir.parent)}")
    return [(n, gdir / SEGMENTS / f"{n}.sqlite", gdir / SEGMENTS / f"{n}.faiss") for n in names]


def generation_file_label(path: Path) -> str:
    """A generation file's name as the user sees it in the folder (``segments/s000003.sqlite``)."""
    return f"{SEGMENTS}/{path.name}" if path.parent.name == SEGMENTS else path.name


def kb_path(settings: Settings, name: str) -> Path:
    return settings.home / validate_name(name)


def list_kbs(settings: Settings) -> list[str]:
    """Every KB under the home folder: those with a manifest, and those whose manifest is gone
    but whose data is still on disk (listed so that they are reported as broken, not forgotten)."""
    if not settings.home.is_dir():
        return []
    return sorted(p.name for p in settings.home.iterdir()
                  if (p / MANIFEST).is_file() or (p.is_dir() and generations_on_disk(p)))
