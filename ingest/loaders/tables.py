"""Tables as Markdown blocks: one rule for DOCX, HTML and PDF tables, and for cutting them into chunks.

A loader turns a table into a grid of cell texts (``html_grid``, ``docx_grid``, pdfplumber's rows),
with a spanning cell repeated in every row and column it covers (a merged "提供输入的安全要素" heads
each of its 14 columns: a reader of one row still sees its header). ``markdown`` renders the grid;
the first row is the header. A layout table (one column, one row, or a table holding tables) is not a
table and is read as text by the loader.

``split`` cuts a table longer than a chunk between rows, repeating the header in every piece, and
``row_sentences`` reads a piece back as one sentence per row, each cell named by its header
("函数名：WCHNET_Init；简要说明：库初始化"): what the extractive answerer quotes.
"""

from __future__ import annotations

from ingest.loaders.clean import clean_inline

MAX_SPAN = 1000  # a colspan/rowspan beyond this is broken markup, not a table


def is_data_table(grid: list[list[str]]) -> bool:
    """At least two rows and two columns with text: anything less is layout."""
    if len(grid) < 2:
        return False
    filled_cols = sum(1 for j in range(max(len(r) for r in grid)) if any(j < len(r) and r[j] for r in grid))
    return filled_cols >= 2


def normalize(grid: list[list[str]]) -> list[list[str]]:
    """Cells cleaned to one line each, rows padded to one width, empty rows and columns dropped."""
    rows = [[clean_inline(c or "") for c in r] for r in grid]
    width = max((len(r) for r in rows), default=0)
    rows = [r + [""] * (width - len(r)) for r in rows if any(r)]
    keep = [j for j in range(width) if any(r[j] for r in rows)]
    return [[r[j] for j in keep] for r in rows]


def markdown(grid: list[list[str]]) -> str:
    """The grid as a Markdown table. The first row is the header; a first row with a spanning cell (a
    group title over several columns) is merged with the row under it ("提供输入的安全要素 SF3"), so
    every column keeps a name of its own."""
    rows = normalize(grid)
    if not rows:
        return ""
    first = rows[0]
    if len(rows) > 2 and any(a and a == b for a, b in zip(first, first[1:], strict=False)):
        rows = [[f"{a} {b}".strip() if a != b else a for a, b in zip(first, rows[1], strict=True)], *rows[2:]]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(rows[0]), "|" + "---|" * len(rows[0]), *(line(r) for r in rows[1:])])


def html_grid(table) -> list[list[str]]:
    """A BeautifulSoup ``<table>``'s rows as a grid, rowspan/colspan cells repeated where they span."""
    rows = [tr for tr in table.find_all("tr") if tr.find_parent("table") is table]
    grid: list[list[str]] = []
    carry: dict[int, tuple[str, int]] = {}  # column -> (text, rows still covered)
    for tr in rows:
        out: list[str] = []
        for cell in tr.find_all(["td", "th"], recursive=False):
            _fill_carried(out, carry)
            text = clean_inline(cell.get_text(" "))
            span, down = _span(cell, "colspan"), _span(cell, "rowspan")
            for _ in range(span):
                if down > 1:
                    carry[len(out)] = (text, down - 1)
                out.append(text)
        _fill_carried(out, carry)
        grid.append(out)
    return grid


def _fill_carried(out: list[str], carry: dict[int, tuple[str, int]]) -> None:
    """Append the cells that rowspans from rows above cover at the current column (``len(out)``)."""
    while len(out) in carry:
        col = len(out)
        text, left = carry[col]
        out.append(text)
        if left <= 1:
            del carry[col]
        else:
            carry[col] = (text, left - 1)


def _span(cell, attr: str) -> int:
    try:
        return max(1, min(int(str(cell.get(attr, 1)).strip() or 1), MAX_SPAN))
    except ValueError:
        return 1


def docx_grid(table) -> list[list[str]]:
    """A python-docx table's rows as a grid: python-docx already repeats a merged cell in every grid
    cell it covers (horizontal and vertical merges)."""
    return [[c.text for c in row.cells] for row in table.rows]


class PageTable(str):
    """A table found on a PDF page, standing in the page's list of text lines where it sits (the
    ``str`` value is a placeholder no real line equals, so line-level rules leave it alone)."""

    grid: list[list[str]]

    def __new__(cls, grid: list[list[str]], n: int) -> PageTable:
        obj = super().__new__(cls, f"\x00table {n}\x00")
        obj.grid = grid
        return obj


def pdf_page_lines(page, clean) -> list[str] | None:
    """A pdfplumber page's text lines with its ruled tables in place (``PageTable``), or None when the
    page has no table (the caller keeps its own text lines). ``clean`` cleans one line of text."""
    tables = sorted(page.find_tables(), key=lambda t: t.bbox[1])
    if not tables:
        return None
    outside = page
    for t in tables:
        outside = outside.outside_bbox(t.bbox, strict=False)
    x0, top, x1, bottom = page.bbox
    lines: list[str] = []
    y = top
    for n, t in enumerate(tables):
        lines += _band_lines(outside, (x0, y, x1, max(y, t.bbox[1])), clean)
        lines.append(PageTable(pdf_grid(t), n))
        y = max(y, t.bbox[3])
    lines += _band_lines(outside, (x0, y, x1, bottom), clean)
    return lines


def _band_lines(page, box, clean) -> list[str]:
    if box[3] - box[1] < 1:
        return []
    text = page.crop(box, strict=False).extract_text() or ""
    return [clean(line) for line in text.split("\n")]


def pdf_grid(table) -> list[list[str]]:
    """A pdfplumber table as a grid; a cell that a merged cell covers (pdfplumber: None) gets the text
    of the cell whose box contains it."""
    texts = table.extract()
    boxes = [row.cells for row in table.rows]
    spans = [(box, texts[i][j]) for i, row in enumerate(boxes) for j, box in enumerate(row) if box is not None]
    grid = []
    for i, row in enumerate(boxes):
        out = []
        for j, box in enumerate(row):
            if box is not None:
                out.append(texts[i][j] or "")
                continue
            col = table.columns[j].bbox if j < len(table.columns) else (-1, 0, -1, 0)
            cx = (col[0] + col[2]) / 2
            cy = (table.rows[i].bbox[1] + table.rows[i].bbox[3]) / 2
            out.append(next((t or "" for b, t in spans if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]), ""))
        if not grid or out != grid[-1]:  # a ruling in one column splits the others' cells: one row, not two
            grid.append(out)
    return grid
