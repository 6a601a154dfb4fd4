"""Per-file resource limits of ingestion: what one file may cost before it is reported and skipped.

Two layers, so a hostile file (a zip bomb, a 50 MB single-line JSONL, HTML nested 10,000 deep, a PDF
claiming ten million pages) costs seconds and bounded memory, and the batch goes on:

1. the loaders check what they can see cheaply before the expensive step: a DOCX's unpacked size
   from its zip directory, then each part inflated in 1 MiB steps to one byte past its declared size
   (a directory that under-states a part is a zip bomb), a JSONL record's size before ``json.loads``,
   the nesting depth of a parsed HTML tree before it is walked, a PDF's page count from its page tree before any page is
   read; each breach is a ``LoadError`` naming the limit and its setting;
2. ``ingest.loaders.isolated`` parses each file in a child process with an address-space cap and a
   wall-time limit: whatever the loaders cannot foresee (a parser that loops, a stream that
   inflates inside a library) ends as one reported file, not a stuck or killed ingest.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * MIB  # the file itself (max_file_mb)
    max_unpacked_bytes: int = 128 * MIB  # DOCX parts, unpacked (max_unpacked_mb)
    max_record_bytes: int = 4 * MIB  # one JSONL line (max_record_mb)
    max_depth: int = 256  # HTML element nesting (max_html_depth)
    max_pages: int = 5000  # PDF pages, image frames (max_pages)
    # how the loaders read scans (they travel with the limits to the parser process): OCR mode, its dpi
    ocr: str = "auto"  # auto | always | never (Settings.ocr)
    ocr_dpi: int = 200

    @classmethod
    def from_settings(cls, s) -> Limits:
        return cls(max_bytes=int(s.max_file_mb * MIB), max_unpacked_bytes=int(s.max_unpacked_mb * MIB),
                   max_record_bytes=int(s.max_record_mb * MIB), max_depth=int(s.max_html_depth),
                   max_pages=int(s.max_pages), ocr=str(getattr(s.ocr, "value", s.ocr)), ocr_dpi=int(s.ocr_dpi))


DEFAULT_LIMITS = Limits()


def size_text(n: int, *, limit: bool = False) -> str:
    """'60.0 MiB' for a size; a limit drops a trailing '.0' ('50 MiB')."""
    for unit, scale in (("GiB", 2**30), ("MiB", MIB), ("KiB", 2**10)):
        if n >= scale:
            text = f"{n / scale:.1f}"
            if limit and text.endswith(".0"):
                text = text[:-2]
            return f"{text} {unit}"
    return f"{n} bytes"
