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

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class KBError(Exception):
    """A knowledge-base level problem the user can act on (unknown KB, bad name, locked...)."""


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):  # fullmatch: "$" alone would let a trailing newline through
        raise KBError(f"invalid KB name {name!r}: use 1-64 letters, digits, '_', '-', '.', starting with a letter "
                      "or digit")
    return name


def read_manifest(kb_dir: Path) -> dict:
    path = kb_dir / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KBError(f"knowledge base {kb_dir.name!r} not found under {kb_dir.parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KBError(f"manifest of {kb_dir.name!r} is unreadable: {e}") from None
    except OSError as e:
        raise KBError(f"manifest of {kb_dir.name!r} cannot be read: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise KBError(f"manifest of {kb_dir.name!r} is unreadable: a JSON {type(data).__name__}, not an object")
    gen = data.get("generation", 0)
    if not isinstance(gen, int) or isinstance(gen, bool) or gen < 0:
        raise KBError(f"manifest of {kb_dir.name!r} is unreadable: generation {gen!r} is not a whole number")
    if not isinstance(data.get("format_version", 0), int):
        raise KBError(f"manifest of {kb_dir.name!r} is unreadable: format_version {data['format_version']!r}")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise KBError(f"KB {kb_dir.name!r} was written by a newer docqa (format {data['format_version']})")
    return data


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


def gen_dir(kb_dir: Path, generation: int) -> Path:
    return kb_dir / f"gen-{generation:06d}"
