"""Document loaders: files on disk -> ``Document`` objects (text + headings + page numbers).

``load_file`` picks the loader from the file suffix, reads the bytes once (their SHA-256 is the
document's ``content_hash``) and turns every failure into a ``LoadError`` with a reason a user
can act on, so the ingest batch can report the file and go on. ``iter_files`` expands folders.

Third-party parsers (pypdf, python-docx, BeautifulSoup, markdown-it-py, charset-normalizer) are
imported inside the loaders, so importing this package (and ``docqa --help``) stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from docqa.document import Document
from ingest.loaders.docx import load_docx
from ingest.loaders.errors import LoadError
from ingest.loaders.html import load_html
from ingest.loaders.image import IMAGE_SUFFIXES, load_image
from ingest.loaders.jsonl import load_jsonl
from ingest.loaders.legacy_doc import load_doc
from ingest.loaders.limits import DEFAULT_LIMITS, Limits, size_text
from ingest.loaders.markdown import load_markdown
from ingest.loaders.pdf import load_pdf
from ingest.loaders.progress import reporting
from ingest.loaders.sniff import mismatch
from ingest.loaders.text import load_txt

__all__ = ["SUPPORTED_SUFFIXES", "Limits", "LoadError", "iter_files", "load_file", "mismatch"]

_LOADERS: dict[str, Callable[[Path, bytes, Limits], Document | list[Document]]] = {
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".doc": load_doc,  # converted by LibreOffice where it is installed (legacy_doc.py)
    ".html": load_html,
    ".htm": load_html,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_txt,
    ".jsonl": load_jsonl,
    **dict.fromkeys(IMAGE_SUFFIXES, load_image),  # read by OCR (image.py, ocr.py)
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(sorted(_LOADERS))
DEFAULT_MAX_BYTES = DEFAULT_LIMITS.max_bytes


def load_file(path: str | Path, *, max_bytes: int | None = None, limits: Limits = DEFAULT_LIMITS,
              progress=None) -> list[Document]:
    """Load one file into Documents (one per file, one per record for JSONL).

    The suffix (case-insensitive) chooses the format. Raises ``LoadError`` for a missing file, a
    directory, an empty or oversized file, an unsupported or legacy format, content the format's
    loader cannot read (corrupt, encrypted with a password, binary, no text), and a breach of one
    of ``limits`` (see ``ingest.loaders.limits``). ``max_bytes`` overrides ``limits.max_bytes``.
    ``progress(what, done, total)``: told of progress inside the file (OCR pages; ``progress.py``).
    """
    if max_bytes is not None:
        limits = dataclasses.replace(limits, max_bytes=max_bytes)
    max_bytes = limits.max_bytes
    abs_path = Path(path).expanduser().resolve()
    where = str(abs_path)
    size = _stat(abs_path)
    suffix = abs_path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        kind = f"'{suffix}'" if suffix else "(no suffix)"
        raise LoadError(where, f"unsupported file type {kind}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if size == 0:
        raise LoadError(where, "file is empty (0 bytes)")
    if size > max_bytes:
        raise LoadError(where, f"file is {size_text(size)}, over the {size_text(max_bytes, limit=True)} limit "
                               "(max_file_mb)")
    try:
        data = abs_path.read_bytes()
    except OSError as e:
        raise LoadError(where, f"cannot read the file: {e.strerror or e}") from None
    try:
        with reporting(progress) if progress is not None else contextlib.nullcontext():
            result = loader(abs_path, data, limits)
    except LoadError:
        raise
    except MemoryError:
        raise LoadError(where, "parsing it ran out of memory (parse_memory_mb); the file is too large or "
                               "hostile") from None
    except RecursionError:
        raise LoadError(where, "it is nested too deeply to parse") from None
    except Exception as e:  # a parser bug on one odd file must not stop the batch
        fmt = suffix.lstrip(".").upper()
        raise LoadError(where, f"could not read this {fmt} file ({type(e).__name__}: {e})") from e
    return result if isinstance(result, list) else [result]


def _stat(path: Path) -> int:
    """The file's size; LoadError when it is missing, a directory or not accessible."""
    try:
        if path.is_dir():
            raise LoadError(str(path), "is a directory, not a file")
        return path.stat().st_size
    except FileNotFoundError:
        raise LoadError(str(path), "file not found") from None
    except OSError as e:
        raise LoadError(str(path), f"cannot access the file: {e.strerror or e}") from None


def iter_files(paths: list[str | Path]) -> Iterator[Path]:
    """The files to ingest, each once, in a stable order.

    A folder is walked recursively in sorted order, skipping hidden files and folders (".git",
    ".DS_Store") and Office lock files ("~$x.docx"), and yields supported suffixes (legacy .doc included:
    converted where LibreOffice is installed, reported with what to do where not). A path
    named explicitly is yielded even when it is missing or unsupported, so that ``load_file``
    reports it instead of it vanishing silently.
    """
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        found = _walk(path) if path.is_dir() else [path]
        for f in found:
            key = _identity(f)
            if key not in seen:
                seen.add(key)
                yield f


def _identity(path: Path) -> Path:
    """The resolved path that identifies a file, or the absolute one when it cannot be resolved (a
    symlink loop: ``load_file``/the batch then reports that file, and only that file)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def display_name(path: str | Path) -> str:
    """A path as a user can read it in a report: undecodable bytes of a non-UTF-8 file name shown
    escaped (b'\\xff') instead of breaking the report, the store or the terminal."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _walk(folder: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith((".", "~$")):
                continue
            if Path(name).suffix.lower() in _LOADERS:
                out.append(Path(root) / name)
    return sorted(out)
