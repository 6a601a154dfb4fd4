"""The paragraph-aware length chunker: the baseline every smarter chunker is measured against.

Rules, in order:
1. a heading always ends the current chunk (a chunk never spans two sections);
2. paragraphs are appended while the chunk stays within ``max_tokens``;
3. a paragraph longer than ``max_tokens`` is cut at sentence ends, and a sentence longer than
   that at ``max_tokens`` characters' worth (nothing is ever dropped);
4. a chunk shorter than ``min_tokens`` is merged into the next chunk of the same section when
   that fits (a bare "第一条" or a one-line list intro is no passage on its own).
"""

from __future__ import annotations

from ..document import Block, BlockKind, Document
from ..sentences import split_sentences
from ..tokenize import count_tokens
from ..units import Level, Unit


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
        joiner = "" if _is_cjk_join(cur, sent) else " "
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


def _is_cjk_join(a: str, b: str) -> bool:
    return bool(a) and (ord(a[-1]) > 0x2E80 or ord(b[0]) > 0x2E80)


def _sections(blocks: list[Block]) -> list[list[Block]]:
    sections: list[list[Block]] = [[]]
    for b in blocks:
        if b.kind == BlockKind.HEADING:
            sections.append([])
        else:
            sections[-1].append(b)
    return [s for s in sections if s]


def chunk_blocks(doc: Document, *, max_tokens: int = 256, min_tokens: int = 24, count=count_tokens) -> list[Unit]:
    """Segments of ``doc``. ``count`` measures length: the embedding model's own tokenizer when
    ingesting (``Embedder.count_tokens``), so no chunk is longer than the model reads; the cheap
    estimate ``ingest.tokenize.count_tokens`` elsewhere."""
    units: list[Unit] = []
    for section in _sections(doc.blocks):
        chunks: list[tuple[str, Block]] = []  # (text, first block)
        cur, first = "", None
        for block in section:
            for piece in _pieces(block.text, max_tokens, count):
                if cur and count(f"{cur}\n{piece}") > max_tokens:
                    chunks.append((cur, first))
                    cur, first = "", None
                cur = f"{cur}\n{piece}" if cur else piece
                first = first or block
        if cur:
            chunks.append((cur, first))
        chunks = _merge_small(chunks, max_tokens, min_tokens, count)
        for text, blk in chunks:
            units.append(Unit(doc_id=doc.doc_id, text=text, level=Level.SEGMENT, ord=len(units),
                              keyinfo=_heading_keyinfo(doc.title, blk.heading_path),
                              heading_path=list(blk.heading_path), page=blk.page))
    return units


def _merge_small(chunks: list[tuple[str, Block]], max_tokens: int, min_tokens: int,
                 count=count_tokens) -> list[tuple[str, Block]]:
    out: list[tuple[str, Block]] = []
    carry: tuple[str, Block] | None = None
    for text, blk in chunks:
        if carry is not None:
            merged = f"{carry[0]}\n{text}"
            if count(merged) <= max_tokens:
                text, blk = merged, carry[1]
            else:
                out.append(carry)
            carry = None
        if count(text) < min_tokens:
            carry = (text, blk)
        else:
            out.append((text, blk))
    if carry is not None:
        if out and count(f"{out[-1][0]}\n{carry[0]}") <= max_tokens:
            out[-1] = (f"{out[-1][0]}\n{carry[0]}", out[-1][1])
        else:
            out.append(carry)
    return out


def _heading_keyinfo(title: str, heading_path: list[str]) -> str:
    """Level-1 key info of a segment from structure alone: the title and heading path."""
    parts = [title] if title and (not heading_path or heading_path[0] != title) else []
    parts.extend(heading_path)
    return " > ".join(p for p in parts if p)
