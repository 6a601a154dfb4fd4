"""What an answer is, whichever backend produced it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from docqa.text.citations import cited_pieces
from docqa.text.refusal import REFUSAL_EN, REFUSAL_ZH, refusal_message

__all__ = ["REFUSAL_EN", "REFUSAL_ZH", "AnswerResult", "refusal_message", "stream_answer"]


@dataclass
class AnswerResult:
    answer: str
    citations: list[dict] = field(default_factory=list)
    refused: bool = False
    query: str = ""  # the standalone query that was searched
    evidence_score: float = 0.0
    fallback: bool = False
    # the answer is the product's own fixed wording (a refusal, the LLM-down notice), not generated
    # text: the guard has nothing to ground, the audit log still records it
    fixed_text: bool = False
    reason: str | None = None
    # what the reader found (service/answering/reading.py ReadAnswer.span_field); None otherwise
    answer_span: dict | None = None
    # what decided to answer or refuse: "reader" (its P(answer)), "evidence" (sentence support), "rerank", "article"
    basis: str = "evidence"
    # the KB's threshold for that basis (evidence_score below it refuses); None where none applies
    threshold: float | None = None
    # the pieces of the answer quoted from the passages (extractive answers): what the guard grounds
    quotes: list[str] | None = field(default=None, compare=False)
    # what the reply was given without (a reranker that failed to load, a follow-up not condensed)
    warnings: list[str] = field(default_factory=list)
    # seconds per stage (retrieve, generate, filter), for /metrics; not part of the reply
    timings: dict = field(default_factory=dict, compare=False)

    @property
    def outcome(self) -> str:
        """answered | refused | fallback | snapped | dropped | redacted."""
        if self.refused:
            return "refused"
        reason = self.reason or ""
        for kind in ("snapped", "dropped", "redacted"):
            if reason.startswith(f"compliance {kind}"):
                return kind
        return "fallback" if self.fallback else "answered"

    @property
    def fallback_cause(self) -> str | None:
        """Why a fallback reply was given, as a short label (None when none was)."""
        if not self.fallback:
            return None
        reason = (self.reason or "").lower()
        for words, label in (("llm unavailable", "llm"), ("blocklist", "blocklist"), ("not supported", "ungrounded"),
                             ("personal data", "personal_data"), ("not answered from the documents", "stage"),
                             ("no approved reply", "snap_no_match"), ("empty", "empty")):
            if words in reason:
                return label
        return "other"

    def to_dict(self) -> dict:
        return {"answer": self.answer, "citations": self.citations, "refused": self.refused,
                "fallback": self.fallback, "reason": self.reason, "query": self.query,
                "evidence_score": round(float(self.evidence_score), 4), "answer_span": self.answer_span,
                "basis": self.basis, "threshold": self.threshold, "warnings": self.warnings}


def stream_answer(result: AnswerResult) -> Iterator[str]:
    """A finished answer as deltas, one sentence (with its citation) at a time."""
    yield from cited_pieces(result.answer)
