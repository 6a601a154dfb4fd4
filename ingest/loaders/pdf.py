"""PDF loader (pypdf): page-numbered paragraphs rebuilt from the text lines of each page.

A PDF has no paragraphs, only positioned lines, so we rebuild them with plain heuristics:
- lines repeated at the top or bottom of most pages (running headers/footers, "V1.1  3") and
  lines that are only a page number are dropped;
- a line continues the previous one when the previous line ran (nearly) to the right margin and
  did not end a sentence, unless it starts like a new item ("1.", "（二）", "第三条", "•");
- wrapped Chinese lines are joined without a space, Latin ones with a space;
- a line that is only "第X章 ..."/"第X节 ..." becomes a heading.
Pages without a usable text layer (none, too little text for the page's area, or mojibake) are
rendered and recognised (``ocr.py``; ``Limits.ocr``: auto | always | never), one page image at a
time, with per-page progress; their paragraphs keep the recognition confidence. A page that fails
to render or yields no text is reported in ``meta["warnings"]`` and the rest of the file is kept.
Line width is measured in display cells (a Han character counts two), so the "full line" test
works for Chinese, English and mixed text alike. Encrypted PDFs with an empty user password
(common for vendor manuals) are opened; pypdf needs the ``cryptography`` package for AES.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections import Counter
from pathlib import Path

from docqa.document import BlockKind, Document
from ingest.loaders._builder import BlockBuilder, cn_heading_kind, file_document
from ingest.loaders.clean import clean_line, join_lines
from ingest.loaders.errors import LoadError
from ingest.loaders.limits import DEFAULT_LIMITS, Limits

_EDGE_LINES = 3  # how many lines at the top and bottom of a page may be header/footer
_FULL_LINE = 0.8  # a line at least this share of the typical full width is "wrapped"
_PAGE_NUMBER = re.compile(
    r"^(?:[-–—]?\s*\d{1,4}\s*[-–—]?|第\s*\d{1,4}\s*页(?:\s*[,，/]?\s*共\s*\d{1,4}\s*页)?"
    r"|(?:page|p\.)\s*\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?|\d{1,4}\s*/\s*\d{1,4})$",
    re.I,
)
_NEW_ITEM = re.compile(
    r"^(?:\d{1,3}(?:\.\d{1,3})*(?:[.、．)）]|\s)|[（(][一二三四五六七八九十\d]{1,3}[）)]"
    r"|[一二三四五六七八九十]{1,3}[、．.]|第[一二三四五六七八九十百零〇\d]{1,6}[编章节条款]"
    r"|[•·●○▪■□◆◇➢►\-–*]\s|[a-zA-Z][.)]\s|【)"
)
_SENTENCE_END = "。！？；：!?;:"
_JUNK_TITLE = re.compile(r"^(?:untitled|microsoft (?:word|powerpoint) - .*|.*\.(?:docx?|pdf|pptx?))$", re.I)


def load_pdf(path: Path, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Document:
    """A .pdf file as one Document with ``meta["pages"]`` and 1-based ``page`` on every block
    (``meta["ocr_pages"]``: the pages read by OCR; ``meta["warnings"]``: pages that yielded nothing)."""
    from pypdf.errors import LimitReachedError

    reader = _open(path, data, limits)
    try:
        pages = [_page_lines(page) for page in reader.pages]
        scans = [i for i, page in enumerate(reader.pages) if _needs_ocr(page, pages[i], limits.ocr)]
    except LimitReachedError as e:  # pypdf's own guards: a stream inflating past 75 MB, huge arrays...
        raise LoadError(str(path), f"a PDF object exceeds pypdf's safety limit ({e}); a decompression bomb?") from None
    meta: dict = {"pages": len(pages)}
    _add_tables(data, pages, set(scans))
    confidence: dict[tuple[int, str], float] = {}
    if scans:
        warnings = _ocr_into(path, data, scans, pages, confidence, limits)
        meta["ocr_pages"] = [i + 1 for i in scans]
        if warnings:
            meta["warnings"] = warnings
    if not any(pages):
        why = "no text: no text layer and OCR is off (ocr: never)" if limits.ocr == "never" else (
            "no text found, neither in the text layer nor by OCR")
        raise LoadError(str(path), why + _first_warnings(meta))
    pages = _drop_headers_footers(pages)
    builder = _build_blocks(pages, confidence)
    if not builder.blocks:
        raise LoadError(str(path), "no extractable text" + _first_warnings(meta))
    return file_document(path, data, "pdf", _title(reader), builder.blocks, meta)


def _add_tables(data: bytes, pages: list[list[str]], skip: set[int]) -> None:
    """Put the ruled tables of text-layer pages in place (pdfplumber's table finder, ``tables.py``):
    such a page's lines are re-read around its tables. A page pdfplumber cannot read keeps its lines."""
    import pdfplumber

    from ingest.loaders.tables import pdf_page_lines

    try:
        pdf = pdfplumber.open(io.BytesIO(data), password="")
    except Exception:  # noqa: BLE001 - pdfminer refusing a file pypdf read: tables stay lines of text
        return
    with pdf:
        for i, page in enumerate(pdf.pages):
            if i >= len(pages) or i in skip or not pages[i]:
                continue
            try:
                lines = pdf_page_lines(page, clean_line)
            except Exception:  # noqa: BLE001 - one odd page: its text lines as pypdf read them
                lines = None
            finally:
                page.close()
            if lines is not None and any(lines):
                pages[i] = lines


def _first_warnings(meta: dict) -> str:
    w = meta.get("warnings") or []
    return f" ({'; '.join(w[:3])}{'; ...' if len(w) > 3 else ''})" if w else ""


_MIN_CHARS_PER_SQ_INCH = 0.2  # an A4 page with fewer than ~20 characters of text layer is a scan
_MOJIBAKE = re.compile(r"[\ufffd\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f]|\(cid:\d+\)")


def _needs_ocr(page, lines: list[str], mode: str) -> bool:
    """Whether a page is read by OCR: always; never; or (auto) when its text layer is missing, too thin
    for the page's area, or mostly garbage (unmapped glyphs, private-use code points)."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    text = "".join(lines).replace(" ", "")
    try:
        box = page.mediabox
        area = abs(float(box.width) * float(box.height)) / (72 * 72)
    except Exception:  # noqa: BLE001 - an odd media box: judge by the text alone
        area = 93.0  # A4 / Letter
    if len(text) < _MIN_CHARS_PER_SQ_INCH * area:
        return True
    return len(_MOJIBAKE.findall(text)) > 0.1 * len(text)


def _ocr_into(path: Path, data: bytes, scans: list[int], pages: list[list[str]],
              confidence: dict[tuple[int, str], float], limits: Limits) -> list[str]:
    """Replace ``pages[i]`` of the ``scans`` with their OCR paragraphs (each followed by a paragraph
    break); returns one warning per page that failed to render or yielded no text."""
    from ingest.loaders import ocr
    from ingest.loaders.progress import report

    warnings: list[str] = []
    name = path.name
    try:
        def starting(i: int, done: int) -> None:  # told before a page is rendered: progress shows it at once
            report(f"{name}: OCR page {i + 1}", done, len(scans))

        for i, image in ocr.render_pages(data, scans, limits.ocr_dpi, before=starting):
            if image is None:
                warnings.append(f"page {i + 1}: could not be rendered for OCR")
                continue
            paras = ocr.paragraphs(ocr.recognize(image), image.width)
            del image
            if not paras:
                if not pages[i]:
                    warnings.append(f"page {i + 1}: OCR found no text")
                continue  # a thin text layer and an empty scan: keep the text layer
            lines: list[str] = []
            for p in paras:
                lines += [p.text, ""]
                confidence[(i + 1, p.text)] = min(p.confidence, confidence.get((i + 1, p.text), 1.0))
            pages[i] = lines
        report(f"{name}: OCR", len(scans), len(scans))
    except ocr.OCRUnavailable as e:
        if not any(pages):
            raise LoadError(str(path), f"no text layer, and {e}") from None
        warnings.append(f"pages {', '.join(str(i + 1) for i in scans)} look scanned but were not OCR'd: {e}")
    except Exception as e:  # noqa: BLE001 - pdfium refusing the file: keep what the text layer gave
        warnings.append(f"OCR could not open the PDF ({type(e).__name__}: {e})")
    return warnings


def _open(path: Path, data: bytes, limits: Limits):
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import DependencyError, LimitReachedError, PyPdfError

    if b"%PDF-" not in data[:1024]:
        raise LoadError(str(path), "not a valid PDF: the file does not start with a %PDF header")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise LoadError(str(path), "PDF is password-protected")
        _check_page_count(path, _declared_pages(reader), limits)
        n = len(reader.pages)
        if n == 0:
            raise LoadError(str(path), "not a valid PDF: it has no pages")
        _check_page_count(path, n, limits)
    except LimitReachedError as e:  # e.g. a page tree whose Kids array holds 200,000 pages
        raise LoadError(str(path), f"too many pages or objects: over pypdf's safety limit ({e}); the page "
                                   f"limit is {limits.max_pages:,} (max_pages)") from None
    except DependencyError:
        raise LoadError(str(path), "PDF is encrypted; install the 'cryptography' package to open it") from None
    except NotImplementedError as e:
        raise LoadError(str(path), f"PDF uses an unsupported encryption ({e})") from None
    except LoadError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise LoadError(str(path), f"not a valid PDF: {e or type(e).__name__} (truncated or corrupt?)") from None
    return reader


def _declared_pages(reader) -> int | None:
    """The page count the page tree's root declares (/Count), read without walking the tree."""
    from pypdf.errors import LimitReachedError

    try:
        count = reader.trailer["/Root"]["/Pages"]["/Count"]
        return int(count)
    except LimitReachedError:  # e.g. a Kids array too long for pypdf to read: reported as too many pages
        raise
    except Exception:  # a missing or odd /Count: the walked count is checked instead
        return None


def _check_page_count(path: Path, n: int | None, limits: Limits) -> None:
    if n is not None and n > limits.max_pages:
        raise LoadError(str(path), f"the PDF has {n:,} pages, over the {limits.max_pages:,}-page limit (max_pages)")


def _page_lines(page) -> list[str]:
    """The whitespace-cleaned lines of one page; "" marks a blank line (a paragraph break)."""
    from pypdf.errors import LimitReachedError

    try:
        text = page.extract_text() or ""
    except LimitReachedError:
        raise
    except Exception:  # one broken content stream must not lose the other pages
        return []
    lines = [clean_line(raw) for raw in text.split("\n")]
    return lines if any(lines) else []


def _drop_headers_footers(pages: list[list[str]]) -> list[list[str]]:
    """Remove page-number lines and lines repeated at the page edges of most pages.

    Digits are masked before comparing, so "WCHNET协议栈库说明 3 http://wch.cn" on page 3 and
    "... 4 ..." on page 4 count as the same running header.
    """

    from ingest.loaders.tables import PageTable

    def edges(lines: list[str]) -> set[int]:  # a table is never a running header
        text_at = [i for i, line in enumerate(lines) if line and not isinstance(line, PageTable)]
        return set(text_at[:_EDGE_LINES] + text_at[-_EDGE_LINES:])

    def mask(line: str) -> str:
        return re.sub(r"\d+", "#", line.replace(" ", ""))

    counts: Counter[str] = Counter()
    for lines in pages:
        counts.update({mask(lines[i]) for i in edges(lines)})
    with_text = sum(1 for lines in pages if lines)
    repeated = {k for k, c in counts.items() if with_text >= 2 and c >= max(2, 0.5 * with_text)}
    cleaned = []
    for lines in pages:
        edge = edges(lines)
        kept = [
            line
            for i, line in enumerate(lines)
            if not (i in edge and (mask(line) in repeated or _PAGE_NUMBER.match(line)))
        ]
        while kept and not kept[0]:  # a blank at a page edge is not a paragraph break:
            kept.pop(0)  # paragraphs run on across pages
        while kept and not kept[-1]:
            kept.pop()
        cleaned.append(kept)
    return cleaned


def _width(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


def _build_blocks(pages: list[list[str]], confidence: dict[tuple[int, str], float] | None = None) -> BlockBuilder:
    """Rebuild paragraphs across lines (and across page breaks); each starts on its own page.
    ``confidence``: OCR confidence of a (page, line); a paragraph gets the lowest of its lines'."""
    from ingest.loaders.tables import PageTable

    widths = sorted(_width(line) for lines in pages for line in lines if line and not isinstance(line, PageTable))
    full = widths[int(0.95 * (len(widths) - 1))] if widths else 0
    builder = BlockBuilder(cn_heading_kind(line) for lines in pages for line in lines if line)
    pending: list[str] = []
    conf: list[float] = []
    start_page = 1

    def flush() -> None:
        if pending:
            builder.paragraph(join_lines(pending), start_page, confidence=min(conf) if conf else None)
            pending.clear()
            conf.clear()

    for page_no, lines in enumerate(pages, start=1):
        # a table first on its page may continue the table that ended the previous page
        table_ran_on = bool(builder.blocks) and builder.blocks[-1].kind is BlockKind.TABLE and not pending
        first_line = next((x for x in lines if x), None)
        for line in lines:
            if not line:
                flush()
                continue
            if isinstance(line, PageTable):
                flush()
                if table_ran_on and line is first_line and builder.continue_table(line.grid):
                    continue  # the previous page's table, running on
                if not builder.table(line.grid, page_no):  # layout, not data: its rows as text
                    for row in line.grid:
                        builder.paragraph(" ".join(c for c in row if c), page_no)
                continue
            if cn_heading_kind(line):
                flush()
                builder.line(line, page_no)
                continue
            if pending and (_NEW_ITEM.match(line) or not _continues(pending[-1], full)):
                flush()
            if not pending:
                start_page = page_no
            pending.append(line)
            if confidence and (page_no, line) in confidence:
                conf.append(confidence[(page_no, line)])
    flush()
    return builder


def _continues(previous: str, full: int) -> bool:
    """Whether the line after ``previous`` belongs to the same paragraph."""
    return previous[-1] not in _SENTENCE_END and _width(previous) >= _FULL_LINE * full


def _title(reader) -> str:
    try:
        title = str((reader.metadata or {}).get("/Title") or "").strip()
    except Exception:  # broken metadata is not worth failing the document
        return ""
    return "" if _JUNK_TITLE.match(title) else title
