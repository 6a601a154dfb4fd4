"""DOCX loader (python-docx): paragraphs and tables in body order, headings from styles.

A paragraph is a heading when its own outline level, its style name ("Heading N"/"标题 N") or
the outline level inherited through its style chain says so. The style chain matters in real
Chinese documents: GB/T-template standards use custom styles such as "章标题"/"一级条标题"
whose outline level is set on the style, never on the paragraph. Table-of-contents paragraphs
are skipped (they would duplicate every heading with a page number). Table rows become
paragraphs with cells joined by " | ", merged cells counted once.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from pathlib import Path

from docqa.document import Document
from ingest.loaders._builder import BlockBuilder, cn_heading_kind, file_document
from ingest.loaders.clean import clean_inline
from ingest.loaders.errors import LoadError
from ingest.loaders.limits import DEFAULT_LIMITS, Limits, size_text

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .doc (and .xls/.ppt) container
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*([1-9])$", re.I)
_TITLE_STYLES = {"title", "标题"}
_TOC_STYLE = re.compile(r"^(?:toc|目录)\s*\d", re.I)
_BODY_LEVEL = 9  # w:outlineLvl 9 means "body text"
_MAX_PARTS = 10_000  # zip entries; a real document has tens to a few hundred


def _check_unpacked_size(path: Path, data: bytes, limits: Limits) -> None:
    """Refuse a zip bomb before python-docx inflates anything: first from the zip directory (too
    many parts, declared sizes over ``max_unpacked_mb``), then by inflating each part in 1 MiB steps
    to one byte past the size its directory declares. The second check is needed because
    ``zipfile.ZipFile.read`` inflates an entry in one call of up to 1 GiB of output and only then cuts
    it to the declared size: a directory that under-states a part (4,000 bytes declared, 1.5 GiB in the
    stream) would cost a gigabyte of memory before the CRC check fails."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
            _check_declared(path, infos, limits)
            for info in infos:
                _check_stream(path, data, info)
    except LoadError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error, NotImplementedError) as e:
        raise LoadError(str(path), f"not a valid DOCX (zip) file: {e}") from None


def _check_declared(path: Path, infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    if len(infos) > _MAX_PARTS:
        raise LoadError(str(path), f"the zip holds {len(infos):,} parts, over the {_MAX_PARTS:,}-part limit of a DOCX")
    total = sum(i.file_size for i in infos)
    if total > limits.max_unpacked_bytes:
        biggest = max(infos, key=lambda i: i.file_size)
        part = f"{biggest.filename}: {size_text(biggest.file_size)}"
        raise LoadError(str(path), f"unpacks to {size_text(total)} ({part}), over the "
                                   f"{size_text(limits.max_unpacked_bytes, limit=True)} unpacked-size limit "
                                   "(max_unpacked_mb); a zip bomb?")


def _check_stream(path: Path, data: bytes, info: zipfile.ZipInfo, step: int = 2**20) -> None:
    """Inflate one part's raw stream in bounded steps; longer than its declared size is a zip bomb."""
    if info.compress_type == zipfile.ZIP_STORED:
        return  # a stored part is read as its declared length, never more
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise LoadError(str(path), f"{info.filename} is compressed with zip method {info.compress_type}; a DOCX "
                                   "holds stored or deflated parts only")
    head = data[info.header_offset:info.header_offset + 30]
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise LoadError(str(path), f"not a valid DOCX (zip) file: no local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    begin = info.header_offset + 30 + name_len + extra_len
    raw = memoryview(data)[begin:begin + info.compress_size]
    inflate, seen, at = zlib.decompressobj(-15), 0, 0
    while not inflate.eof:
        if inflate.unconsumed_tail:
            piece = inflate.unconsumed_tail
        elif at < len(raw):
            piece, at = raw[at:at + step], at + step
        else:
            return  # a truncated stream: zipfile reports it when the part is read
        seen += len(inflate.decompress(piece, step))
        if seen > info.file_size:
            raise LoadError(str(path), f"the zip directory declares {info.file_size} bytes for {info.filename}, "
                                       "but its stream inflates past that: a zip bomb (refused unread)")


def load_docx(path: Path, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Document:
    """A .docx file as one Document; title = the first "Title"-styled paragraph, else the file
    name (core-properties titles in real files are template leftovers such as "标准名称")."""
    document = _open(path, data, limits)
    items = list(document.iter_inner_content())
    builder = BlockBuilder(cn_heading_kind(line) for it in items if hasattr(it, "text") for line in it.text.split("\n"))
    title = ""
    for item in items:
        if hasattr(item, "text"):
            styled_title = _add_paragraph(builder, item)  # always add, even once a title is known
            title = title or styled_title
        else:
            _add_table(builder, item)
    if not builder.blocks:
        raise LoadError(str(path), "no text found in the DOCX document")
    return file_document(path, data, "docx", title or path.stem, builder.blocks)


def _open(path: Path, data: bytes, limits: Limits):
    if data.startswith(_OLE_MAGIC):
        raise LoadError(str(path), "this is a legacy Word (.doc) file named .docx: rename it to .doc (docqa converts "
                                   ".doc with LibreOffice) or save it as .docx")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise LoadError(str(path), "not a valid DOCX (zip) file")
    _check_unpacked_size(path, data, limits)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        return docx.Document(io.BytesIO(data))
    except (KeyError, ValueError, PackageNotFoundError):
        raise LoadError(str(path), "not a valid DOCX: a zip archive, but not a Word document") from None
    except zipfile.BadZipFile as e:
        raise LoadError(str(path), f"not a valid DOCX (zip) file: {e}") from None
    except SyntaxError as e:  # lxml.etree.XMLSyntaxError derives from SyntaxError
        raise LoadError(str(path), f"not a valid DOCX: broken XML ({e})") from None


def _add_paragraph(builder: BlockBuilder, par) -> str:
    """Add one Word paragraph; returns its text when it is styled as the document title."""
    style = _style_name(par)
    if _TOC_STYLE.match(style):
        return ""
    if style.lower() in _TITLE_STYLES:
        builder.paragraph(par.text)
        return clean_inline(par.text)
    level = _heading_level(par, style)
    if level:
        builder.heading(par.text, level)
        return ""
    for line in par.text.split("\n"):  # soft line breaks separate lines the author kept apart
        builder.line(line)
    return ""


def _add_table(builder: BlockBuilder, table) -> None:
    """A data table as a Markdown table block; a layout table (one row or column) as its rows' text."""
    from ingest.loaders.tables import docx_grid

    if builder.table(docx_grid(table)):
        return
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a horizontally merged cell is repeated by python-docx
                continue
            previous = cell._tc
            text = clean_inline(cell.text)
            if text:
                cells.append(text)
        builder.paragraph(" | ".join(cells))


def _style_name(par) -> str:
    try:
        return (par.style.name or "") if par.style is not None else ""
    except (KeyError, ValueError):
        return ""


def _heading_level(par, style_name: str) -> int | None:
    """1-based heading level, or None for body text (see module docstring for the order)."""
    direct = _outline_level(par._p.pPr)
    if direct is not None:
        return direct + 1 if direct < _BODY_LEVEL else None
    m = _HEADING_STYLE.match(style_name)
    if m:
        return int(m.group(1))
    style = par.style
    for _ in range(10):  # style chains are short; guard against a cycle in a broken file
        if style is None:
            return None
        inherited = _outline_level(style.element.pPr)
        if inherited is not None:
            return inherited + 1 if inherited < _BODY_LEVEL else None
        style = style.base_style
    return None


def _outline_level(p_pr) -> int | None:
    from docx.oxml.ns import qn

    if p_pr is None:
        return None
    el = p_pr.find(qn("w:outlineLvl"))
    try:
        return int(el.get(qn("w:val"))) if el is not None else None
    except (TypeError, ValueError):
        return None
