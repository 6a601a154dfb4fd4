"""The measures of ``docqa eval`` (and of bench/ and the fine-tune reports: one implementation).

Ranks are 1-based positions of the first gold passage in a retrieved list, ``None`` when absent.
Text comparisons use ``normalize_text``: NFKC, case folded, whitespace removed, so "4.5 %" in an
answer matches "4.5%" in a passage and full-width digits match ASCII ones.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from docqa.text.citations import cited_numbers, cited_pieces, strip_citations

_WS = re.compile(r"\s+")

# (name, higher is better): the metrics a baseline comparison gates on
MAIN_METRICS: tuple[tuple[str, bool], ...] = (
    ("hit@5", True), ("mrr@10", True), ("answer_contains", True), ("citation_precision", True),
    ("citation_recall", True), ("refusal_accuracy", True), ("false_refusal_rate", False),
)


def hit_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose first gold passage is within the top ``k`` (bench/ calls it R@k)."""
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def mrr_at(ranks: Sequence[int | None], k: int = 10) -> float:
    return sum(1.0 / r for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def normalize_text(text: str) -> str:
    return _WS.sub("", unicodedata.normalize("NFKC", text or "")).casefold()


def contains_any(text: str, spans: Iterable[str]) -> bool:
    hay = normalize_text(strip_citations(text))
    return any(s and normalize_text(s) in hay for s in spans)


def first_rank(retrieved: Sequence[dict], *, doc_ids: Sequence[str] = (), sources: Sequence[str] = (),
               answers: Sequence[str] = ()) -> int | None:
    """Rank of the first retrieved passage that is gold: its document is one of ``doc_ids`` or
    ``sources`` (a path, or its last components), else it contains a gold answer span."""
    for i, hit in enumerate(retrieved, start=1):
        if doc_ids and hit.get("doc_id") in doc_ids:
            return i
        src = str(hit.get("source") or "")
        if sources and any(src == s or src.endswith("/" + s.lstrip("/")) or src.split("#")[0].endswith("/" + s)
                           for s in sources):
            return i
        if not doc_ids and not sources and answers and contains_any(str(hit.get("text") or ""), answers):
            return i
    return None


def cited_sentences(answer: str) -> list[tuple[str, list[int]]]:
    """The answer's sentences with the citation numbers each carries ("...一个月[1]。" -> [1])."""
    out = []
    for piece in cited_pieces(answer or ""):
        nums = cited_numbers(piece)
        text = strip_citations(piece).strip()
        if text:
            out.append((text, nums))
    return out


def supports(passage: str, sentence: str) -> bool:
    """Whether ``passage`` holds what ``sentence`` says: a verbatim quote, or at least 60% of its
    tokens (an LLM's light paraphrase)."""
    from docqa.text.tokenize import tokenize

    core = normalize_text(sentence).rstrip("。．.!?！？；;，,")
    if not core:
        return True
    if core in normalize_text(passage):
        return True
    words = [w for w in tokenize(sentence) if w.strip()]
    if not words:
        return False
    have = set(tokenize(passage))
    return sum(1 for w in words if w in have) / len(words) >= 0.6


def citation_counts(answer: str, passages: dict[int, str]) -> tuple[int, int]:
    """(precise, total) citations: a citation [n] is precise when passage n supports the sentence
    that carries it."""
    precise = total = 0
    for sentence, nums in cited_sentences(answer):
        for n in nums:
            total += 1
            precise += int(n in passages and supports(passages[n], sentence))
    return precise, total


def numbers_exact(answer: str, passages: Iterable[str]) -> bool | None:
    """True when every number (with its unit) in the answer appears in a cited passage; None when
    the answer states no number."""
    from docqa.text.facts import numbers

    said = numbers(strip_citations(answer))
    if not said:
        return None
    have: set = set()
    for p in passages:
        have |= numbers(p)
    values = {v for v, _ in have}
    return all((v, u) in have or v in values for v, u in said)


def share(flags: Iterable[bool | None]) -> float | None:
    vals = [bool(f) for f in flags if f is not None]
    return sum(vals) / len(vals) if vals else None


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    i = (len(s) - 1) * p / 100
    lo, hi = int(i), min(int(i) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def regressions(current: dict, baseline: dict, tolerance: float) -> list[str]:
    """The main metrics that got worse than ``baseline`` by more than ``tolerance`` (absolute)."""
    out = []
    for name, higher in MAIN_METRICS:
        a, b = current.get(name), baseline.get(name)
        if a is None or b is None:
            continue
        drop = (b - a) if higher else (a - b)
        if drop > tolerance:
            out.append(f"{name} {b:.3f} -> {a:.3f}")
    return out
