"""What a file's bytes are, whatever its name says: uploads are checked by content, not only by name.

A ``.pdf`` that is a ZIP, a ``.docx`` that is an executable or a ``.txt`` full of NUL bytes is refused
before a parser sees it, with the reason. Only the first bytes are read (and, for a ZIP, its central
directory), so the check costs nothing next to parsing.
"""

from __future__ import annotations

import io
import zipfile

_MAGIC = (  # (prefix, kind)
    (b"%PDF-", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),  # legacy Office (.doc .xls .ppt)
    (b"\x89PNG\r\n\x1a\n", "image"), (b"\xff\xd8\xff", "image"), (b"GIF8", "image"), (b"BM", "image"),
    (b"II*\x00", "image"), (b"MM\x00*", "image"),
    (b"\x7fELF", "executable"), (b"MZ", "executable"),
    (b"\x1f\x8b", "gzip"), (b"7z\xbc\xaf\x27\x1c", "7z"), (b"Rar!", "rar"),
)
_NAMES = {"pdf": "a PDF", "zip": "a ZIP archive", "docx": "a Word (.docx) document",
          "ole": "a legacy Office (OLE2) file", "image": "an image", "executable": "an executable program",
          "gzip": "a gzip archive", "7z": "a 7-Zip archive", "rar": "a RAR archive", "text": "text",
          "binary": "binary data"}
_EXPECTED = {".pdf": "pdf", ".docx": "docx", ".doc": "ole", ".html": "text", ".htm": "text", ".md": "text",
             ".markdown": "text", ".txt": "text", ".jsonl": "text",
             **dict.fromkeys((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"), "image")}


def content_kind(data: bytes) -> str:
    head = data[:1024]
    if b"%PDF-" in head:  # PDF readers accept a header after some junk bytes; so does the loader
        return "pdf"
    for prefix, kind in _MAGIC:
        if head.startswith(prefix):
            if kind == "image" and prefix == b"BM" and len(data) < 26:
                continue
            if kind == "zip":
                return _zip_kind(data)
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    sample = data[:8192]
    if b"\x00" in sample and not sample.startswith((b"\xff\xfe", b"\xfe\xff")):  # NULs: binary, unless UTF-16
        return "binary"
    return "text"


def _zip_kind(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "docx" if "word/document.xml" in z.namelist() else "zip"
    except (zipfile.BadZipFile, ValueError, OSError):
        return "zip"


def mismatch(suffix: str, data: bytes) -> str | None:
    """Why ``data`` is not what a file ending in ``suffix`` must be (None: it is)."""
    want = _EXPECTED.get(suffix.lower())
    if want is None:
        return None
    have = content_kind(data)
    if have == want:
        return None
    return f"the name says {suffix} but the content is {_NAMES[have]}, not {_NAMES[want]}"
