"""Answering: question (+ history) -> retrieval -> evidence check -> answer with citations.

``answer_question`` (whole) and ``answer_stream`` (deltas, then the result) are the plain
functions every front end calls (CLI ``docqa ask``, the native and the OpenAI-compatible HTTP
endpoints), so they can never disagree. The steps are in ``pipeline.py``; the backend (extractive
or an LLM) comes from the KB's settings (``llm_backend``, per-KB ``kb_llm``).
"""

from __future__ import annotations

from collections.abc import Iterator

from docqa.filters import DocFilter
from docqa.kb import KnowledgeBase
from service.answering.history import joined_query as standalone_query
from service.answering.pipeline import Prepared, answer, answer_events, citation, prepare
from service.answering.result import AnswerResult, refusal_message, stream_answer

__all__ = ["AnswerResult", "Prepared", "answer_question", "answer_stream", "citation", "refusal_message",
           "standalone_query", "stream_answer"]


def answer_question(kb: KnowledgeBase, question: str, history: list[dict] | None = None, *, k: int | None = None,
                    params: dict | None = None, stage: str | None = None,
                    request_id: str | None = None, where: DocFilter | None = None) -> AnswerResult:
    """The answer to ``question`` from ``kb``. ``params``: generation overrides for this request
    (temperature, top_p, max_tokens, repetition_penalty, no_repeat_ngram_size); ``stage``: the
    dialogue stage the compliance filter picks its fallback reply by; ``where``: the caller's groups and
    metadata filters, applied inside retrieval (``docqa.filters``)."""
    early = _screened(kb, question, stage, request_id)
    result = early if early is not None else answer(prepare(kb, question, history, k=k, params=params, stage=stage,
                                                            request_id=request_id, where=where))
    _observe(result)
    return result


def answer_stream(kb: KnowledgeBase, question: str, history: list[dict] | None = None, *, k: int | None = None,
                  params: dict | None = None, stage: str | None = None,
                  request_id: str | None = None, where: DocFilter | None = None) -> Iterator[str | AnswerResult]:
    """Text deltas while the answer is written, then the final ``AnswerResult`` as the last item.

    Retrieval runs before the first item, so errors in the request (unknown KB, bad settings) are
    raised at the call, not mid-stream."""
    early = _screened(kb, question, stage, request_id)
    if early is not None:
        _observe(early)
        return iter([*stream_answer(early), early])
    prep = prepare(kb, question, history, k=k, params=params, stage=stage, request_id=request_id, where=where)
    return _observed(answer_events(prep))


def _observed(items: Iterator[str | AnswerResult]) -> Iterator[str | AnswerResult]:
    for item in items:
        if isinstance(item, AnswerResult):
            _observe(item)
        yield item


def _observe(result: AnswerResult) -> None:
    from service.metrics import observe_answer

    observe_answer(result)


def _screened(kb: KnowledgeBase, question: str, stage: str | None, request_id: str | None) -> AnswerResult | None:
    """The stage's fallback, before any retrieval, for a question the compliance filter screens out."""
    from service.compliance import screen_question

    return screen_question(kb, question, stage=stage, request_id=request_id)
