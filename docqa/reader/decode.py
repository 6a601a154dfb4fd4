"""From the reader's logits to an answer: per window the kind probabilities and the best span; across
windows the one most likely to hold the answer. Used by serving and by training's held-out figures,
so both judge the model the same way."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from docqa.reader.net import KINDS
from docqa.reader.windows import Window

MAX_ANSWER_TOKENS = 40


@dataclass
class Reading:
    window: int  # index of the window in the caller's list
    passage: int
    kind: str  # span | yes | no (what the window answers with, were it to answer)
    p_answer: float  # 1 - P(none)
    p_kinds: dict
    start: int = -1  # character range of the span in the passage (-1: no span: yes/no)
    end: int = -1
    span_score: float = 0.0  # softmax-normalised start x end probability of the window's best span (any kind)
    p_reader: float = 0.0  # the reader's own 1 - P(none), before a window ranker (docqa/reader/rank.py) combined it
    window_text: tuple[int, int] = (0, 0)  # the window's character range in its passage (set by the caller)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def best_span(start: np.ndarray, end: np.ndarray, w: Window, max_tokens: int = MAX_ANSWER_TOKENS,
              text: str | None = None, within: tuple[int, int] | None = None) -> tuple[int, int, float]:
    """(first token, last token, probability) of the best span of the window's passage tokens. With the
    passage ``text``, a span does not run on past the end of a sentence, clause or line (a short answer never
    does); ``within``: only tokens inside this character range of the passage."""
    lo, hi = w.first, w.last
    ps = softmax(start[lo:hi + 1])
    pe = softmax(end[lo:hi + 1])
    if within is not None:
        inside = np.array([a >= within[0] and b <= within[1] for a, b in w.offsets], dtype=bool)
        if inside.any():
            ps, pe = ps * inside, pe * inside
    n = hi - lo + 1
    # score[i, j] = ps[i] * pe[j] for i <= j < i + max_tokens
    grid = np.triu(np.outer(ps, pe)) - np.triu(np.outer(ps, pe), k=max_tokens)
    if text is not None:
        ends = [k for k, (a, b) in enumerate(w.offsets) if _ENDS.search(text, a, b) or "\n" in text[b:b + 1]]
        for k in ends:  # no span from before or at k to after k
            grid[:k + 1, k + 1:] = 0.0
    i, j = np.unravel_index(int(np.argmax(grid)), (n, n))
    return lo + int(i), lo + int(j), float(grid[i, j])


def read_window(start: np.ndarray, end: np.ndarray, kind: np.ndarray, w: Window, index: int,
                text: str | None = None) -> Reading:
    """One window's reading (``start``/``end``: that window's logits, ``kind``: its 4 kind logits; ``text``:
    the passage, so spans stay within a sentence)."""
    pk = softmax(kind.astype(np.float64))
    probs = dict(zip(KINDS, (float(p) for p in pk), strict=True))
    which = max(("span", "yes", "no"), key=lambda k: probs[k])
    r = Reading(index, w.passage, which, 1.0 - probs["none"], probs, p_reader=1.0 - probs["none"])
    i, j, r.span_score = best_span(start, end, w, text=text)  # a ranker reads it for every kind
    if which == "span":
        r.start, r.end = w.offsets[i - w.first][0], w.offsets[j - w.first][1]
    return r


def read_all(start: np.ndarray, end: np.ndarray, kind: np.ndarray, wins: list[Window],
             texts: list[str] | None = None) -> list[Reading]:
    """Every window's reading, most likely to hold the answer first (ties: earlier window first).
    ``texts``: the passages by ``Window.passage`` (spans then stay within a sentence)."""
    out = [read_window(start[i], end[i], kind[i], w, i, texts[w.passage] if texts else None)
           for i, w in enumerate(wins)]
    return sorted(out, key=lambda r: (-r.p_answer, r.window))


_SENT_END = re.compile(r"[。！？；!?;\n]|\.(?=\s)")
_ENDS = re.compile(r"[。！？；!?;\n]")


def clauses(text: str, lo: int, hi: int, cut: re.Pattern | None = None) -> list[tuple[int, int]]:
    """The character ranges of the sentences and clauses (cut at 。！？；, line ends and English full stops, or at
    ``cut``) of text[lo:hi]."""
    out, a = [], lo
    for m in (cut or _SENT_END).finditer(text, lo, hi):
        if text[a:m.end()].strip():
            out.append((a, m.end()))
        a = m.end()
    if text[a:hi].strip():
        out.append((a, hi))
    return out


def sentence_around(text: str, start: int, end: int) -> tuple[int, int]:
    """The character range of the sentence(s) holding [start, end)."""
    a = 0
    for m in _SENT_END.finditer(text, 0, start):
        a = m.end()
    m = _SENT_END.search(text, end)
    return a, (m.end() if m else len(text))
