"""The heading-path bookkeeping every loader uses.

Loaders only decide *what* is a heading or a paragraph; ``BlockBuilder`` cleans the text (``clean.py``),
drops empty blocks and keeps the stack of enclosing headings, so ``heading_path`` means the same thing
for every format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from docqa.document import Block, BlockKind, Document, doc_id_for_path, sha256_hex
from ingest.loaders.clean import clean_code, clean_inline, clean_line
from ingest.loaders.errors import LoadError
from ingest.loaders.tables import is_data_table, markdown, normalize

# "第一章 总则", "第三节　设立", "第二编 物权": a line that is only a Chinese structure heading.
_CN_HEADING = re.compile(r"^第[一二三四五六七八九十百千零〇两\d]{1,6}([编章节])(?:\s*(\S.{0,40}))?$")
_CN_RANK = {"编": 0, "章": 1, "节": 2}
_SENTENCE_END = "。；，！？;,!?"


def cn_heading_kind(line: str) -> str | None:
    """'编', '章' or '节' when the line is only a Chinese structure heading, else None."""
    m = _CN_HEADING.match(clean_line(line))
    if not m or (m.group(2) and m.group(2)[-1] in _SENTENCE_END):
        return None
    return m.group(1)


class BlockBuilder:
    """Collects blocks in reading order and gives each the path of headings it sits under.

    ``cn_kinds`` are the Chinese structure-heading kinds present in the document (see
    ``cn_heading_kind``); they get consecutive levels (编 < 章 < 节) below the deepest
    format-level heading (h1, "#", Word "Heading 1"...) currently open.
    """

    def __init__(self, cn_kinds: Iterable[str] = ()):
        self.blocks: list[Block] = []
        self._stack: list[tuple[int, str, bool]] = []  # (level, text, is_cn_structure)
        present = sorted({k for k in cn_kinds if k}, key=_CN_RANK.__getitem__)
        self._cn_level = {k: i + 1 for i, k in enumerate(present)}

    @property
    def path(self) -> list[str]:
        return [text for _, text, _ in self._stack]

    def heading(self, text: str, level: int, page: int | None = None, *, _cn: bool = False) -> None:
        text = clean_inline(text)
        if not text:
            return
        level = max(1, level)
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text, _cn))
        self.blocks.append(Block(text, BlockKind.HEADING, self.path, page, level))

    def paragraph(self, text: str, page: int | None = None, *, code: bool = False,
                  confidence: float | None = None) -> None:
        text = clean_code(text) if code else clean_inline(text)
        if text:
            self.blocks.append(Block(text, BlockKind.PARAGRAPH, self.path, page, 0, confidence=confidence))

    def table(self, grid: list[list[str]], page: int | None = None) -> bool:
        """A data table as one Markdown block; False (nothing added) when ``grid`` is layout, not data."""
        rows = normalize(grid)
        if not is_data_table(rows):
            return False
        self.blocks.append(Block(markdown(rows), BlockKind.TABLE, self.path, page, 0))
        return True

    def continue_table(self, grid: list[list[str]]) -> bool:
        """Append ``grid``'s rows to the table that is the last block when it has the same columns (a
        table running on over a page break, without its header again); False when it is not that."""
        last = self.blocks[-1] if self.blocks else None
        rows = normalize(grid)
        if last is None or last.kind != BlockKind.TABLE or not rows:
            return False
        header = last.text.split("\n", 1)[0]
        if header.count(" | ") + 1 != len(rows[0]) or markdown([rows[0], *rows]).split("\n", 1)[0] == header:
            return False  # another shape, or it repeats the header: a table of its own
        body = markdown([[f"c{j}" for j in range(len(rows[0]))], *rows]).split("\n")[2:]
        last.text = "\n".join([last.text, *body])
        return True

    def line(self, text: str, page: int | None = None) -> None:
        """A paragraph, unless it is a Chinese structure heading ("第一章 总则")."""
        kind = cn_heading_kind(text)
        if kind is None:
            self.paragraph(text, page)
            return
        if kind not in self._cn_level:  # not announced up front: place it after the known kinds
            self._cn_level[kind] = len(self._cn_level) + 1
        base = max((lvl for lvl, _, cn in self._stack if not cn), default=0)
        self.heading(text, base + self._cn_level[kind], page, _cn=True)


def file_document(
    path: Path, data: bytes, fmt: str, title: str, blocks: list[Block], meta: dict | None = None
) -> Document:
    """Wrap a file's blocks as a Document with its path-derived id and the hash of its bytes."""
    if not blocks:
        raise LoadError(str(path), "no text found in the file")
    return Document(
        doc_id=doc_id_for_path(str(path)),
        source=str(path),
        title=clean_inline(title) or path.stem,
        blocks=blocks,
        content_hash=sha256_hex(data),
        meta={"format": fmt, "path": str(path), **(meta or {})},
    )
