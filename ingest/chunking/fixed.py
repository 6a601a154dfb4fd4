"""The paragraph-aware length chunker: the baseline every smarter chunker is measured against.

Rules, in order:
1. a heading always ends the current chunk (a chunk never spans two sections), and so does the
   start of a statute's article or a standard's numbered clause (``ingest.structure``): an article
   is one unit, cut (by 款, each piece labelled with its 款) only when it alone exceeds the length;
2. paragraphs are appended while the chunk stays within ``max_tokens``;
3. a paragraph longer than ``max_tokens`` is cut at sentence ends, and a sentence longer than
   that at ``max_tokens`` characters' worth (nothing is ever dropped);
4. a chunk shorter than ``min_tokens`` is merged into the next chunk of the same section when
   that fits (a bare "第一条" or a one-line list intro is no passage on its own).
"""

from __future__ import annotations

from docqa.document import Block, BlockKind, Document
from docqa.text.language import joins_without_space
from docqa.text.sentences import split_sentences
from docqa.text.tokenize import count_tokens
from docqa.units import Level, Unit
from ingest.structure import annotate, span_label


def _pieces(text: str, max_tokens: int, count=count_tokens) -> list[str]:
    """``text`` cut into pieces of at most ``max_tokens`` at sentence boundaries where possible."""
    if count(text) <= max_tokens:
        return [text]
    out: list[str] = []
    cur = ""
    for sent in split_sentences(text):
        while count(sent) > max_tokens:  # a run-on sentence: hard cut
            cut = _hard_cut(sent, max_tokens, count)
            if cur:
                out.append(cur)
                cur = ""
            out.append(sent[:cut])
            sent = sent[cut:]
        joiner = "" if joins_without_space(cur, sent) else " "
        if cur and count(cur + joiner + sent) > max_tokens:
            out.append(cur)
            cur = sent
        else:
            cur = cur + joiner + sent if cur else sent
    if cur:
        out.append(cur)
    return out


def _hard_cut(text: str, max_tokens: int, count=count_tokens) -> int:
    lo, hi = 1, len(text)
    while lo < hi:  # longest prefix within the limit
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return max(lo, 1)


def sections_of(blocks: list[Block]) -> list[list[Block]]:
    """Paragraph blocks grouped by section: a heading starts a new one, and so does a change of
    article/numbered clause (``Block.article``, set by ``ingest.structure.annotate``); empty
    sections dropped. No chunker merges across sections."""
    out: list[list[Block]] = [[]]
    for b in blocks:
        if b.kind == BlockKind.HEADING:
            out.append([])
        elif b.kind == BlockKind.TABLE:  # a table is never merged with prose (tables.split cuts it)
            out += [[b], []]
        elif b.text.strip():
            if out[-1] and out[-1][-1].article != b.article:
                out.append([])
            out[-1].append(b)
    return [s for s in out if s]


def table_segments(doc: Document, section: list[Block], first_ord: int, max_tokens: int, count) -> list[Unit]:
    """A table section's segments: the table cut between rows, its header repeated in each piece."""
    from docqa.text.tables import split

    block = section[0]
    return [segment(doc, piece, [block], section, first_ord + i) for i, piece in
            enumerate(split(block.text, max_tokens, count))]


def segment(doc: Document, text: str, blocks: list[Block], section: list[Block], ord_: int,
            line_labels: list[str] | None = None) -> Unit:
    """The segment unit of ``text`` made of ``blocks`` (in order) of ``section``: heading path and
    page of its first block, pinpoint label of the span (``structure.span_label``)."""
    first = blocks[0]
    return Unit(doc_id=doc.doc_id, text=text, level=Level.SEGMENT, ord=ord_,
                keyinfo=_heading_keyinfo(doc.title, first.heading_path), heading_path=list(first.heading_path),
                page=first.page, label=span_label(blocks, section), line_labels=line_labels or [])


def chunk_blocks(doc: Document, *, max_tokens: int = 256, min_tokens: int = 24, count=count_tokens) -> list[Unit]:
    """Segments of ``doc``. ``count`` measures length: the embedding model's own tokenizer when
    ingesting (``Embedder.count_tokens``), so no chunk is longer than the model reads; the cheap
    estimate ``docqa.text.tokenize.count_tokens`` elsewhere."""
    annotate(doc.blocks)
    units: list[Unit] = []
    for section in sections_of(doc.blocks):
        if section[0].kind == BlockKind.TABLE:
            units += table_segments(doc, section, len(units), max_tokens, count)
            continue
        chunks: list[_Chunk] = []
        cur = _Chunk()
        for block in section:
            for piece in _pieces(block.text, max_tokens, count):
                if cur.text and count(f"{cur.text}\n{piece}") > max_tokens:
                    chunks.append(cur)
                    cur = _Chunk()
                cur.add(piece, block)
        if cur.text:
            chunks.append(cur)
        for c in _merge_small(chunks, max_tokens, min_tokens, count):
            units.append(segment(doc, c.text, c.blocks, section, len(units), c.line_labels))
    return units


class _Chunk:
    """A chunk being built: its text (pieces joined by newlines), blocks and each line's label."""

    def __init__(self):
        self.text, self.blocks, self.line_labels = "", [], []

    def add(self, piece: str, block: Block) -> None:
        self.text = f"{self.text}\n{piece}" if self.text else piece
        if not self.blocks or self.blocks[-1] is not block:
            self.blocks.append(block)
        self.line_labels.append(block.label)

    def extend(self, other: _Chunk) -> _Chunk:
        self.text = f"{self.text}\n{other.text}"
        self.blocks += [b for b in other.blocks if not self.blocks or b is not self.blocks[-1]]
        self.line_labels += other.line_labels
        return self


def _merge_small(chunks: list[_Chunk], max_tokens: int, min_tokens: int, count=count_tokens) -> list[_Chunk]:
    out: list[_Chunk] = []
    carry: _Chunk | None = None
    for c in chunks:
        if carry is not None:
            if count(f"{carry.text}\n{c.text}") <= max_tokens:
                c = carry.extend(c)
            else:
                out.append(carry)
            carry = None
        if count(c.text) < min_tokens:
            carry = c
        else:
            out.append(c)
    if carry is not None:
        if out and count(f"{out[-1].text}\n{carry.text}") <= max_tokens:
            out[-1].extend(carry)
        else:
            out.append(carry)
    return out


def _heading_keyinfo(title: str, heading_path: list[str]) -> str:
    """Level-1 key info of a segment from structure alone: the title and heading path."""
    parts = [title] if title and (not heading_path or heading_path[0] != title) else []
    parts.extend(heading_path)
    return " > ".join(p for p in parts if p)
