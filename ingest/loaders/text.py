"""Plain-text loader (.txt) and the encoding detection shared with Markdown and JSONL.

Chinese text files in the wild are as often GB18030/GBK as UTF-8, and a wrong guess silently
produces mojibake that poisons retrieval. So decoding is strict and ordered: a BOM wins, then
UTF-8, then GB18030 (a superset of GBK and GB2312), and only then charset-normalizer's guess.
Binary files (NUL bytes, many control characters) are refused instead of indexed as garbage.
"""

from __future__ import annotations

import re
from pathlib import Path

from docqa.document import Document
from ingest.loaders._builder import BlockBuilder, cn_heading_kind, file_document
from ingest.loaders.clean import join_lines, normalize_newlines
from ingest.loaders.errors import LoadError

_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")  # C0 controls other than \t \n \r \f
_MAX_CONTROL_RATIO = 0.01  # real text has almost no C0 control characters besides \t \n \r \f


def decode_text(path: Path, data: bytes) -> str:
    """Decode a text file's bytes: BOM, UTF-8, GB18030, then charset-normalizer.

    Raises LoadError when the content is binary or no encoding fits.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _check_text(path, data[len(bom) :].decode(encoding))
            except UnicodeDecodeError:
                raise LoadError(
                    str(path), f"starts with a {encoding} byte-order mark but does not decode as it"
                ) from None
    if b"\x00" in data:
        raise LoadError(str(path), "binary content (NUL bytes); not a text file")
    for encoding in ("utf-8", "gb18030"):
        try:
            return _check_text(path, data.decode(encoding))
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise LoadError(
            str(path), "undecodable bytes: not UTF-8 or GB18030, and no other text encoding fits (binary file?)"
        )
    return _check_text(path, str(best))


def _check_text(path: Path, text: str) -> str:
    controls = len(_CONTROL.findall(text))
    if "\x00" in text or (text and controls / len(text) > _MAX_CONTROL_RATIO):
        raise LoadError(str(path), "binary content (control characters); not a text file")
    return text


def text_to_blocks(text: str) -> BlockBuilder:
    """Paragraphs from plain text.

    Paragraphs are separated by blank lines and their wrapped lines are joined (without a space
    in Chinese). A file without any blank line is taken to hold one paragraph per line, the usual
    layout of Chinese .txt files. A line that is only "第X章 ..."/"第X节 ..." becomes a heading.
    """
    lines = normalize_newlines(text).split("\n")
    builder = BlockBuilder(cn_heading_kind(ln) for ln in lines)
    has_blank = _has_inner_blank_line(lines)
    pending: list[str] = []

    def flush() -> None:
        if pending:
            builder.paragraph(join_lines(pending))
            pending.clear()

    for line in lines:
        if not line.strip():
            flush()
        elif cn_heading_kind(line):
            flush()
            builder.line(line)
        elif has_blank:
            pending.append(line)
        else:
            builder.paragraph(line)
    flush()
    return builder


def _has_inner_blank_line(lines: list[str]) -> bool:
    seen_text = False
    blank_after_text = False
    for line in lines:
        if line.strip():
            if blank_after_text:
                return True
            seen_text = True
        elif seen_text:
            blank_after_text = True
    return False


def load_txt(path: Path, data: bytes, limits=None) -> Document:
    """A .txt file as one Document; its title is the file name (plain text has no title)."""
    builder = text_to_blocks(decode_text(path, data))
    if not builder.blocks:
        raise LoadError(str(path), "no text found (the file holds only whitespace)")
    return file_document(path, data, "txt", path.stem, builder.blocks)
