"""OCR of page images, offline: PaddleOCR's PP-OCRv4 Chinese/English models run by onnxruntime.

The models ship inside the ``rapidocr-onnxruntime`` wheel (detection, direction classifier,
recognition; ~15 MB), so nothing is downloaded. ``recognize`` turns one page image into text lines
(box, text, confidence); ``paragraphs`` puts them back into reading order:

1. columns: a vertical gutter in the middle band of the page that no narrow line crosses splits the
   page into two columns; a line that spans the gutter (a title, a full-width paragraph) is read
   where it stands, and the column text between two such lines is read left column first;
2. rows: boxes whose vertical extents overlap by more than half are one row, read left to right;
3. paragraphs: a row joins the previous one unless the gap between them is larger than the line
   spacing, the row is indented, the previous row stopped short of the column's right edge after a
   sentence end, or the row opens a new item ("（一）", "第三条", "1.") or is a structure heading.
A paragraph's confidence is the lowest of its lines' (one misread line is what a reader should
distrust).

``render_pages`` yields a PDF's pages as images one at a time (pypdfium2), so OCR of a long scan
holds one page image in memory, never the document.
"""

from __future__ import annotations

import functools
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

from docqa.errors import Unavailable
from ingest.loaders._builder import cn_heading_kind
from ingest.loaders.clean import join_lines

DPI = 200  # render resolution for OCR (the recognition model reads 48-pixel-high lines)
_NEW_ITEM = re.compile(
    r"^(?:\d{1,3}(?:\.\d{1,3})*(?:[.、．)）]|\s)|[（(][一二三四五六七八九十\d]{1,3}[）)]"
    r"|[一二三四五六七八九十]{1,3}[、．.]|第[一二三四五六七八九十百零〇\d]{1,6}[编章节条款]"
    r"|[•·●○▪■□◆◇➢►\-–*]\s?|[a-zA-Z][.)]\s)"
)
_SENTENCE_END = "。！？；：!?;:"


@dataclass
class Line:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    confidence: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass
class Paragraph:
    text: str
    confidence: float


@functools.lru_cache(maxsize=1)
def _engine():
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as e:
        raise OCRUnavailable("OCR needs the rapidocr-onnxruntime package (pip install rapidocr-onnxruntime), "
                             f"which ships the PP-OCRv4 models: {e}") from None
    return RapidOCR()


class OCRUnavailable(Unavailable):
    """The OCR package is not installed."""


def recognize(image) -> list[Line]:
    """Text lines of one page image (an RGB ``numpy`` array, a PIL image or a path)."""
    import numpy as np

    if not isinstance(image, (np.ndarray, str)):
        image = np.asarray(image.convert("RGB"))
    # no direction classifier: document lines are upright, and it turned good lines upside down (an
    # indented first line of a paragraph came back empty with it, bench/ocr.py)
    result, _ = _engine()(image, use_cls=False)
    lines = []
    for box, text, score in result or []:
        text = (text or "").strip()
        if not text:
            continue
        xs, ys = [p[0] for p in box], [p[1] for p in box]
        lines.append(Line(text, min(xs), min(ys), max(xs), max(ys), float(score)))
    return lines


def paragraphs(lines: list[Line], page_width: float) -> list[Paragraph]:
    """``lines`` of one page as paragraphs in reading order (see the module docstring)."""
    if not lines:
        return []
    out: list[Paragraph] = []
    for column in _reading_order(lines, page_width):
        out.extend(_paragraphs_of_column(column))
    return out


def _reading_order(lines: list[Line], page_width: float) -> list[list[Line]]:
    """Runs of lines to read in order: one column, or the columns of a band between full-width lines."""
    gutter = _gutter(lines, page_width)
    top_down = sorted(lines, key=lambda ln: (ln.y0, ln.x0))
    if gutter is None:
        return [top_down]
    g0, g1 = gutter
    runs: list[list[Line]] = []
    left: list[Line] = []
    right: list[Line] = []
    for ln in top_down:
        if ln.x0 < g0 and ln.x1 > g1:  # spans the gutter: ends the band
            runs.extend(r for r in (left, right) if r)
            left, right = [], []
            runs.append([ln])
        elif ln.x1 <= g1:
            left.append(ln)
        else:
            right.append(ln)
    runs.extend(r for r in (left, right) if r)
    # consecutive single full-width lines belong to one run (a full-width paragraph)
    merged: list[list[Line]] = []
    for r in runs:
        if merged and len(r) == 1 and len(merged[-1]) >= 1 and merged[-1][-1].x0 < g0 and merged[-1][-1].x1 > g1 \
                and r[0].x0 < g0 and r[0].x1 > g1:
            merged[-1].append(r[0])
        else:
            merged.append(r)
    return merged


def _gutter(lines: list[Line], page_width: float) -> tuple[float, float] | None:
    """(x0, x1) of an empty vertical strip in the middle band, with text on both sides, or None."""
    left_edge = min(ln.x0 for ln in lines)
    right_edge = max(ln.x1 for ln in lines)
    span = right_edge - left_edge
    if span <= 0 or len(lines) < 6:
        return None
    narrow = [ln for ln in lines if (ln.x1 - ln.x0) < 0.6 * span]
    if len(narrow) < 0.5 * len(lines):
        return None
    step = max(span / 200, 1.0)
    lo, hi = left_edge + 0.3 * span, left_edge + 0.7 * span
    cover = []
    x = lo
    while x <= hi:
        cover.append((x, sum(1 for ln in narrow if ln.x0 <= x <= ln.x1)))
        x += step
    best: tuple[float, float] | None = None
    start = None
    for x, c in [*cover, (hi + step, 1)]:
        if c == 0 and start is None:
            start = x
        elif c != 0 and start is not None:
            if best is None or (x - start) > (best[1] - best[0]):
                best = (start, x - step)
            start = None
    if best is None or best[1] - best[0] < 0.02 * span:
        return None
    left_n = sum(1 for ln in narrow if ln.x1 <= best[0])
    right_n = sum(1 for ln in narrow if ln.x0 >= best[1])
    if min(left_n, right_n) < 3:
        return None
    return best


def _rows(lines: list[Line]) -> list[list[Line]]:
    rows: list[list[Line]] = []
    for ln in sorted(lines, key=lambda x: (x.y0 + x.y1) / 2):
        row = rows[-1] if rows else None
        if row is not None:
            top = max(min(x.y0 for x in row), ln.y0)
            bottom = min(max(x.y1 for x in row), ln.y1)
            if bottom - top > 0.5 * min(ln.height, min(x.height for x in row)):
                row.append(ln)
                continue
        rows.append([ln])
    return [sorted(r, key=lambda x: x.x0) for r in rows]


def _paragraphs_of_column(lines: list[Line]) -> list[Paragraph]:
    rows = _rows(lines)
    if not rows:
        return []
    heights = [x.height for x in lines]
    h = statistics.median(heights) if heights else 1.0
    left = min(x.x0 for x in lines)
    right = max(x.x1 for x in lines)
    out: list[Paragraph] = []
    cur: list[str] = []
    conf: list[float] = []
    prev = None

    def flush() -> None:
        if cur:
            out.append(Paragraph(join_lines(cur), min(conf)))
            cur.clear()
            conf.clear()

    for row in rows:
        # boxes far apart on one row are table cells (a row of its own); near ones, one line split in two
        tabular = any(b.x0 - a.x1 > 2 * h for a, b in zip(row, row[1:], strict=False))
        text = "  ".join(x.text for x in row) if tabular else join_lines(x.text for x in row)
        y0, y1 = min(x.y0 for x in row), max(x.y1 for x in row)
        x0, x1 = row[0].x0, row[-1].x1
        if prev is not None:
            gap = y0 - prev[1]
            starts_new = (gap > 0.9 * h or x0 - left > 1.5 * h or tabular or prev[3]
                          or (prev[2] < right - 2 * h and cur and cur[-1][-1:] in _SENTENCE_END)
                          or bool(_NEW_ITEM.match(text)) or cn_heading_kind(text) is not None
                          or cn_heading_kind(cur[-1] if cur else "") is not None)
            if starts_new:
                flush()
        cur.append(text)
        conf.extend(x.confidence for x in row)
        prev = (y0, y1, x1, tabular)
    flush()
    return out


def render_pages(data: bytes, pages: list[int], dpi: int = DPI, before=None) -> Iterator[tuple[int, object]]:
    """(page index, PIL image) of the 0-based ``pages`` of a PDF, rendered one at a time; an image is
    yielded as ``None`` when its page fails to render (the caller reports that page). ``before(index,
    done)`` is called before each page is rendered."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data)  # an empty user password (vendor manuals) opens without one
    try:
        for done, i in enumerate(pages):
            if before is not None:
                before(i, done)
            try:
                page = doc[i]
                try:
                    image = page.render(scale=dpi / 72).to_pil()
                finally:
                    page.close()
            except Exception:  # noqa: BLE001 - one broken page is reported by the caller
                image = None
            yield i, image
            del image
    finally:
        doc.close()
