"""HTML loader (BeautifulSoup + lxml) that keeps the main content and drops page chrome.

Real pages (gov.cn and most CMS output) wrap a few kilobytes of text in navigation, metadata
tables, share buttons and QR-code captions. We drop the obviously non-content tags first, then
narrow to the main container: ``<main>``/``<article>``/``role=main`` when present, otherwise the
deepest container that still holds most of the page's prose (paragraph, list and heading text).
Inside it, ``h1``-``h6`` are headings, and ``p``/``li``/table rows/``<br>``-separated lines are
paragraphs; a paragraph that is only "第X章 ..." is a heading too (gov.cn statutes use no h tags).
"""

from __future__ import annotations

import re
from pathlib import Path

from docqa.document import Document
from ingest.loaders._builder import BlockBuilder, cn_heading_kind, file_document
from ingest.loaders.clean import clean_inline, join_lines
from ingest.loaders.errors import LoadError
from ingest.loaders.limits import DEFAULT_LIMITS, Limits

_DROP = (
    "script style noscript template nav footer aside form iframe object embed svg canvas button select input textarea"
).split()
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_PROSE = ["p", "li", "pre", "blockquote", "dd", "dt", *sorted(_HEADINGS)]
_CONTAINERS = {"body", "div", "section", "article", "main", "td", "center", "table", "tbody", "tr"}
_BLOCKS = (
    _CONTAINERS
    | _HEADINGS
    | set(
        "p ul ol li dl dd dt pre blockquote thead tfoot th figure figcaption address caption hr "
        "details summary fieldset".split()
    )
)
_LAYOUT_IN_ROW = ["table", "div", "ul", "ol", "section", "article", *sorted(_HEADINGS)]
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_MAIN_SHARE = 0.8  # the main container must hold at least this share of the page's prose
_SOFT = "\x00"  # marks a source newline: joined without a space between CJK characters


def load_html(path: Path, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Document:
    """An .html/.htm file as one Document; title from <title>, else the first <h1>."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "lxml")
    depth = _max_depth(soup, limits.max_depth)
    if depth > limits.max_depth:
        # the content heuristics walk ancestors per element: time grows with depth squared
        raise LoadError(str(path), f"elements are nested more than {limits.max_depth} deep, the nesting-depth limit "
                                   "(max_html_depth)")
    title = clean_inline(soup.title.get_text()) if soup.title else ""
    _drop_chrome(soup)
    if not title and (h1 := soup.find("h1")):
        title = _inline(h1)
    body = soup.body or soup
    builder = _Walker(body).run(_main_content(body))
    if not builder.blocks:
        raise LoadError(str(path), "no text found in the HTML page")
    return file_document(path, data, "html", title, builder.blocks)


def _max_depth(soup, stop_above: int) -> int:
    """The element nesting depth of the parsed tree, in one linear pass (stops once over the limit)."""
    depth = {id(soup): 0}
    deepest = 0
    for el in soup.descendants:
        if getattr(el, "name", None) is None:
            continue
        d = depth[id(el.parent)] + 1
        depth[id(el)] = d
        if d > deepest:
            deepest = d
            if deepest > stop_above:
                break
    return deepest


def _drop_chrome(soup) -> None:
    from bs4 import Comment, Declaration, Doctype, ProcessingInstruction

    for tag in soup(_DROP):
        tag.decompose()
    for tag in soup("header"):  # site banner; but an <article>'s own header holds its title
        if not tag.find_parent(["article", "main"]):
            tag.decompose()
    for node in soup.find_all(string=lambda s: isinstance(s, (Comment, Doctype, Declaration, ProcessingInstruction))):
        node.extract()
    for tag in soup.find_all(True):
        if tag.decomposed or tag.attrs is None:
            continue
        hidden = tag.has_attr("hidden") or tag.get("aria-hidden") == "true"
        if hidden or _HIDDEN_STYLE.search(tag.get("style") or ""):
            tag.decompose()


def _main_content(body):
    """The element holding the page's main text (see module docstring)."""
    explicit = body.find("main") or body.find(attrs={"role": "main"})
    articles = body.find_all("article")
    if explicit is None and len(articles) == 1:  # several <article>s: a listing, not one story
        explicit = articles[0]
    if explicit is not None and explicit.get_text(strip=True):
        return explicit
    prose = [el for el in body.find_all(_PROSE) if not el.find_parent(_PROSE)]
    total = sum(len(el.get_text(strip=True)) for el in prose)
    if total == 0:
        return body
    share: dict[int, int] = {}
    nodes = {}
    for el in prose:
        n = len(el.get_text(strip=True))
        for parent in el.parents:
            if parent.name in _CONTAINERS:
                share[id(parent)] = share.get(id(parent), 0) + n
                nodes[id(parent)] = parent
            if parent is body:
                break
    best, best_depth = body, 0
    for key, n in share.items():
        if n >= _MAIN_SHARE * total:
            depth = sum(1 for _ in nodes[key].parents)
            if depth > best_depth:
                best, best_depth = nodes[key], depth
    return best


def _inline(el) -> str:
    """Text of an element on one line; source newlines joined the CJK-aware way."""
    return join_lines(re.sub(r"\s*\n\s*", "\n", el.get_text()).split("\n"))


class _Walker:
    """Emits blocks in document order; inline text is buffered until the next block boundary."""

    def __init__(self, body):
        texts = (s for s in body.find_all(string=True) if "第" in s)
        self.builder = BlockBuilder(cn_heading_kind(str(s)) for s in texts)
        self.buf: list[str] = []

    def run(self, root) -> BlockBuilder:
        self._walk(root)
        self._flush()
        return self.builder

    def _walk(self, node) -> None:
        from bs4 import NavigableString

        for child in node.children:
            if isinstance(child, NavigableString):
                self.buf.append(re.sub(r"[ \t\r\f\v]*\n\s*", _SOFT, str(child)))
                continue
            name = child.name
            if name == "br":
                self.buf.append("\n")
            elif name in _HEADINGS:
                self._flush()
                self.builder.heading(_inline(child), int(name[1]))
            elif name == "table" and not child.find(_LAYOUT_IN_ROW) and self._table(child):
                pass  # a data table: one Markdown block (tables.py)
            elif name == "tr" and not child.find(_LAYOUT_IN_ROW):
                self._flush()
                cells = [_inline(c) for c in child.find_all(["td", "th"], recursive=False)]
                self.builder.paragraph(" | ".join(c for c in cells if c))
            elif name == "pre":
                self._flush()
                self.builder.paragraph(child.get_text(), code=True)
            elif name in _BLOCKS:
                self._flush()
                self._walk(child)
                self._flush()
            else:
                self._walk(child)

    def _table(self, table) -> bool:
        from ingest.loaders.tables import html_grid

        self._flush()
        return self.builder.table(html_grid(table))

    def _flush(self) -> None:
        text = "".join(self.buf)
        self.buf.clear()
        for line in text.split("\n"):
            self.builder.line(join_lines(line.split(_SOFT)))
