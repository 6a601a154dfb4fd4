"""Markdown loader built on markdown-it-py's token stream (CommonMark + tables).

Working on tokens rather than regexes gets the corner cases right for free: setext headings,
"#" inside code blocks, nested lists, tables. Inline markup is reduced to its text (links keep
their label, images their alt text, raw HTML tags are dropped). Code blocks stay paragraphs with
their line structure, so an answer can quote them.
"""

from __future__ import annotations

import re
from pathlib import Path

from docqa.document import BlockKind, Document
from ingest.loaders._builder import BlockBuilder, file_document
from ingest.loaders.clean import join_lines
from ingest.loaders.errors import LoadError
from ingest.loaders.text import decode_text

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_FM_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.M)
_HTML_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.S)


def load_markdown(path: Path, data: bytes, limits=None) -> Document:
    """A .md file as one Document; title = front-matter title, else the first "#" heading."""
    from markdown_it import MarkdownIt

    text = decode_text(path, data).replace("\r\n", "\n").replace("\r", "\n")
    title = ""
    fm = _FRONT_MATTER.match(text)
    if fm:
        m = _FM_TITLE.search(fm.group(1))
        title = m.group(1).strip("'\"") if m else ""
        text = text[fm.end() :]
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    builder = _blocks_from_tokens(tokens)
    if not builder.blocks:
        raise LoadError(str(path), "no text found in the Markdown file")
    if not title:
        title = next((b.text for b in builder.blocks if b.kind is BlockKind.HEADING and b.level == 1), "")
    return file_document(path, data, "md", title or path.stem, builder.blocks)


def _blocks_from_tokens(tokens: list) -> BlockBuilder:
    """Walk block tokens: headings, paragraphs (also inside lists/quotes), table rows, code."""
    builder = BlockBuilder()
    row: list[str] | None = None
    grid: list[list[str]] = []
    item_prefix = ""
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            builder.heading(_inline_text(tokens[i + 1]), int(tok.tag[1]))
            i += 2
        elif tok.type == "list_item_open":
            # keep the number of an ordered item ("1. "), bullets carry no information
            item_prefix = f"{tok.info}{tok.markup} " if tok.info else ""
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close" and row is not None:
            grid.append(row)
            row = None
        elif tok.type == "table_close":
            if not builder.table(grid):
                for r in grid:
                    builder.paragraph(" | ".join(c for c in r if c))
            grid = []
        elif tok.type == "inline" and row is not None:
            row.append(_inline_text(tok))
        elif tok.type == "inline" and item_prefix:
            builder.paragraph(item_prefix + _inline_text(tok))
            item_prefix = ""
        elif tok.type == "inline":  # "第一章 总则" without "#" marks is still a heading
            builder.line(_inline_text(tok))
        elif tok.type in ("fence", "code_block"):
            builder.paragraph(tok.content, code=True)
        elif tok.type == "html_block":
            builder.paragraph(_HTML_TAG.sub(" ", tok.content))
        i += 1
    return builder


def _inline_text(tok) -> str:
    """Plain text of an inline token: markup dropped, soft breaks joined the CJK-aware way."""
    lines: list[list[str]] = [[]]
    for child in tok.children or []:
        if child.type in ("text", "code_inline"):
            lines[-1].append(child.content)
        elif child.type == "image":
            lines[-1].append(_inline_text(child))
        elif child.type in ("softbreak", "hardbreak"):
            lines.append([])
    return join_lines("".join(parts) for parts in lines)
