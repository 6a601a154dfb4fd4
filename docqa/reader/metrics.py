"""Exact match and F1 of a short answer against gold answers (CMRC 2018's rule: Chinese by character,
other text by word, punctuation and spaces ignored), and balanced accuracy of answer/refuse decisions.
One implementation for the reader's training figures, `docqa eval run` and the benches."""

from __future__ import annotations

import re
import unicodedata

_PUNCT = set("，。！？；：、“”‘’（）《》〈〉【】『』「」·…—-,.!?;:'\"()[]{}<>/\\ \t\n")


def _units(text: str) -> list[str]:
    """Characters for CJK, lower-cased words for the rest, punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for piece in re.findall(r"[\u2e80-\u9fff\uf900-\ufaff]|[a-z0-9]+|\S", text):
        if piece not in _PUNCT and not all(c in _PUNCT for c in piece):
            out.append(piece)
    return out


def exact(pred: str, golds: list[str]) -> float:
    p = _units(pred)
    return float(any(p == _units(g) for g in golds)) if golds else 0.0


def f1(pred: str, golds: list[str]) -> float:
    p = _units(pred)
    best = 0.0
    for g in golds:
        gu = _units(g)
        common = _overlap(p, gu)
        if common == 0:
            continue
        prec, rec = common / len(p), common / len(gu)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def _overlap(a: list[str], b: list[str]) -> int:
    from collections import Counter

    return sum((Counter(a) & Counter(b)).values())


def balanced_accuracy(answerable: list[bool], answered: list[bool]) -> float | None:
    """Mean of the answered share of answerable questions and the refused share of the others (None
    when either group is empty)."""
    pos = [a for t, a in zip(answerable, answered, strict=True) if t]
    neg = [not a for t, a in zip(answerable, answered, strict=True) if not t]
    if not pos or not neg:
        return None
    return (sum(pos) / len(pos) + sum(neg) / len(neg)) / 2
