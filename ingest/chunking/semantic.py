"""Semantic chunking: cut where a boundary scorer says the topic changes.

Pipeline for one document:

1. sections: a heading always cuts, so pairs are only ever scored inside a section;
2. pieces: each paragraph is a piece; a paragraph longer than ``max_tokens`` is split into its
   sentences (a run-on sentence longer than that is hard-cut), so no piece exceeds the limit;
3. scores: EVERY adjacent pair of pieces of the whole document goes to the scorer in one call
   (``BoundaryScorer.score_pairs``), which batches them through the model: one batched pass
   instead of one forward pass per neighbour comparison;
4. merge: one linear pass appends a piece to the current chunk while its score with the previous
   piece is above ``threshold`` and the chunk stays within ``max_tokens``;
5. tiny fragments (under ``min_tokens``) attach to the neighbour they are most related to, when
   that fits (a bare "第一条" line or a list intro is no passage on its own).

The scorer is an NSP model (``nsp.NSPScorer``) or embedding similarity
(``embedding.EmbeddingScorer``); both return "B continues A" scores, higher = same topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from docqa.document import Block, BlockKind, Document
from docqa.text.language import joins_without_space
from docqa.text.sentences import split_sentences
from docqa.text.tokenize import count_tokens
from docqa.units import Unit
from ingest.chunking.fixed import _hard_cut, sections_of, segment, table_segments
from ingest.structure import annotate


class BoundaryScorer(Protocol):
    """Scores how strongly ``seconds[i]`` continues ``firsts[i]`` (higher = same topic)."""

    def score_pairs(self, firsts: list[str], seconds: list[str]) -> np.ndarray: ...


@dataclass
class Piece:
    text: str
    block: Block
    para: int  # index of the paragraph it comes from (pieces of one paragraph join without "\n")
    tokens: int


def pieces_of(section: list[Block], max_tokens: int, count=count_tokens) -> list[Piece]:
    """The scoring units of a section: paragraphs, or the sentences of over-long paragraphs."""
    out: list[Piece] = []
    for para, block in enumerate(section):
        text = block.text.strip()
        n = count(text)
        if n <= max_tokens:
            out.append(Piece(text, block, para, n))
            continue
        for sent in split_sentences(text):
            while count(sent) > max_tokens:
                cut = _hard_cut(sent, max_tokens, count)
                out.append(Piece(sent[:cut], block, para, count(sent[:cut])))
                sent = sent[cut:]
            if sent:
                out.append(Piece(sent, block, para, count(sent)))
    return out


def merge_pieces(pieces: list[Piece], scores: np.ndarray, *, threshold: float, max_tokens: int,
                 min_tokens: int) -> list[list[Piece]]:
    """Chunks of one section. ``scores[i]`` scores the pair (pieces[i], pieces[i+1])."""
    if not pieces:
        return []
    chunks: list[list[int]] = [[0]]
    size = [pieces[0].tokens]
    for i in range(1, len(pieces)):
        if scores[i - 1] > threshold and size[-1] + pieces[i].tokens <= max_tokens:
            chunks[-1].append(i)
            size[-1] += pieces[i].tokens
        else:
            chunks.append([i])
            size.append(pieces[i].tokens)
    _attach_tiny(chunks, size, scores, max_tokens, min_tokens)
    return [[pieces[i] for i in c] for c in chunks]


def _attach_tiny(chunks: list[list[int]], size: list[int], scores: np.ndarray, max_tokens: int,
                 min_tokens: int) -> None:
    """Merge chunks under ``min_tokens`` into the better-scored neighbour that has room (in place)."""
    j = 0
    while j < len(chunks):
        if size[j] >= min_tokens or len(chunks) == 1:
            j += 1
            continue
        left = scores[chunks[j][0] - 1] if j > 0 else -np.inf
        right = scores[chunks[j][-1]] if j + 1 < len(chunks) else -np.inf
        order = [j - 1, j + 1] if left >= right else [j + 1, j - 1]
        target = next((t for t in order if 0 <= t < len(chunks) and size[t] + size[j] <= max_tokens), None)
        if target is None:
            j += 1
            continue
        lo, hi = min(j, target), max(j, target)
        chunks[lo] = chunks[lo] + chunks[hi]
        size[lo] += size[hi]
        del chunks[hi], size[hi]
        j = lo  # the merged chunk may still be tiny


def join_pieces(pieces: list[Piece]) -> str:
    """Pieces of one paragraph join like the original sentences; paragraphs join with a newline."""
    text = pieces[0].text
    for prev, cur in zip(pieces, pieces[1:], strict=False):
        if cur.para != prev.para:
            text += "\n" + cur.text
        else:
            text += ("" if joins_without_space(text, cur.text) else " ") + cur.text
    return text


def score_document(sections: list[list[Piece]], scorer: BoundaryScorer) -> list[np.ndarray]:
    """Scores of every adjacent pair of every section, computed in ONE scorer call."""
    firsts, seconds, spans = [], [], []
    for pieces in sections:
        start = len(firsts)
        firsts.extend(p.text for p in pieces[:-1])
        seconds.extend(p.text for p in pieces[1:])
        spans.append((start, len(firsts)))
    flat = scorer.score_pairs(firsts, seconds) if firsts else np.zeros(0, dtype=np.float32)
    return [flat[a:b] for a, b in spans]


def chunk_semantic(doc: Document, scorer: BoundaryScorer, *, threshold: float, max_tokens: int = 256,
                   min_tokens: int = 24, count=count_tokens) -> list[Unit]:
    """Segment units of ``doc`` cut where ``scorer`` falls to ``threshold`` or below. ``count``: as
    for ``fixed.chunk_blocks`` (a chunk's length is the sum of its pieces' plus one per joint)."""
    annotate(doc.blocks)
    blocks = sections_of(doc.blocks)
    sections = [[] if s[0].kind == BlockKind.TABLE else pieces_of(s, max_tokens, count) for s in blocks]
    units: list[Unit] = []
    for section, pieces, scores in zip(blocks, sections, score_document(sections, scorer), strict=True):
        if section[0].kind == BlockKind.TABLE:  # cut between rows, never merged with prose
            units += table_segments(doc, section, len(units), max_tokens, count)
            continue
        if section[0].article and _fits(pieces, max_tokens):
            scores = np.ones_like(scores)  # an article (numbered clause) that fits is one unit
        for chunk in merge_pieces(pieces, scores, threshold=threshold, max_tokens=max_tokens,
                                  min_tokens=min_tokens):
            used = list(dict.fromkeys(id(p.block) for p in chunk))
            by_id = {id(p.block): p.block for p in chunk}
            units.append(segment(doc, join_pieces(chunk), [by_id[i] for i in used], section, len(units),
                                 _line_labels(chunk)))
    return units


def _fits(pieces: list[Piece], max_tokens: int) -> bool:
    return sum(p.tokens for p in pieces) + max(len(pieces) - 1, 0) <= max_tokens


def _line_labels(chunk: list[Piece]) -> list[str]:
    """The label of each line of ``join_pieces(chunk)`` (a new line starts at each new paragraph)."""
    out = [chunk[0].block.label]
    for prev, cur in zip(chunk, chunk[1:], strict=False):
        if cur.para != prev.para:
            out.append(cur.block.label)
    return out
