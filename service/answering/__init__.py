"""Answering: question (+ history) -> retrieval -> evidence check -> answer with citations.

``answer_question`` is the plain function every front end calls (CLI ``docqa ask``, the native and
the OpenAI-compatible HTTP endpoints), so they can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator

from ingest.kb import KnowledgeBase
from ingest.search import Hit, search

from .extractive import compose, render, score_sentences
from .result import AnswerResult, refusal_message

__all__ = ["AnswerResult", "answer_question", "stream_answer", "standalone_query"]


def standalone_query(question: str, history: list[dict] | None) -> str:
    """The query to search for. Extractive mode: a follow-up is joined with the previous user turn
    ("那试用期呢？" alone finds nothing; with "劳动合同期限一年" before it, it does)."""
    prev = [m.get("content", "") for m in (history or []) if m.get("role") == "user" and m.get("content")]
    if prev and len(question) < 40:
        return f"{prev[-1]} {question}"
    return question


def citation(n: int, h: Hit) -> dict:
    return {"n": n, "doc_id": h.doc_id, "source": h.source, "title": h.title, "text": h.text,
            "unit_id": h.unit_id, "page": h.page, "heading_path": h.heading_path}


def answer_question(kb: KnowledgeBase, question: str, history: list[dict] | None = None,
                    *, k: int | None = None) -> AnswerResult:
    query = standalone_query(question, history)
    hits = search(kb, query, k or kb.settings.answer_k)
    scored = score_sentences(question if query == question else query, hits, kb.embedder)
    chosen, best = compose(scored, kb.settings.refusal_threshold)
    if not chosen:
        return AnswerResult(answer=refusal_message(question), refused=True, query=query, evidence_score=best,
                            reason="no retrieved passage supports an answer" if hits else "the knowledge base "
                            "returned no passage")
    used = sorted({s.hit_index for s in chosen})
    number_of = {hi: n for n, hi in enumerate(used, start=1)}
    return AnswerResult(answer=render(chosen, number_of), citations=[citation(number_of[i], hits[i]) for i in used],
                        refused=False, query=query, evidence_score=best)


def stream_answer(result: AnswerResult) -> Iterator[str]:
    """The answer text as deltas, one sentence (with its citation) at a time."""
    import re

    for piece in re.findall(r".+?\[\d+\]|.+$", result.answer, flags=re.S):
        yield piece
