"""The Markdown table format of units: how a table block is recognised, cut between rows and read back.

Loaders render tables with ``ingest.loaders.tables.markdown``; chunking cuts them with ``split`` (the
header repeated in every piece) and answering quotes a row as "header：value" with ``row_sentences``.
"""

from __future__ import annotations

import re

_SEPARATOR = re.compile(r"^\|(?:\s*:?-{3,}:?\s*\|)+$")


def is_markdown_table(text: str) -> bool:
    lines = text.split("\n", 2)
    return len(lines) >= 2 and lines[0].startswith("|") and bool(_SEPARATOR.match(lines[1]))


def split(text: str, max_tokens: int, count) -> list[str]:
    """A Markdown table cut between rows into pieces of at most ``max_tokens``, the header and its
    separator line repeated at the top of each piece (a row too long alone is a piece by itself)."""
    lines = text.split("\n")
    if count(text) <= max_tokens or len(lines) <= 3:
        return [text]
    head = "\n".join(lines[:2])
    pieces: list[str] = []
    cur = head
    for row in lines[2:]:
        if cur != head and count(f"{cur}\n{row}") > max_tokens:
            pieces.append(cur)
            cur = head
        cur = f"{cur}\n{row}"
    pieces.append(cur)
    return pieces


def cells(line: str) -> list[str]:
    """The cells of one Markdown table line (escaped pipes kept inside their cell)."""
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def row_sentences(text: str) -> list[str]:
    """Each body row of a Markdown table as "header：cell；header：cell" (empty cells left out)."""
    lines = text.split("\n")
    header = cells(lines[0])
    out = []
    for line in lines[2:]:
        row = cells(line)
        parts = []
        for j, value in enumerate(row):
            if not value:
                continue
            name = header[j] if j < len(header) else ""
            parts.append(f"{name}：{value}" if name and name != value else value)
        if parts:
            out.append("；".join(parts))
    return out
