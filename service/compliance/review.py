"""Apply the filter to an answer and record the verdict: the one call answering makes.

``review(kb, question, result, stage=..., request_id=...)`` returns the result the user gets (a
copy of ``result`` with the final text, ``fallback`` and ``reason`` set, citations kept only where
the final text still cites them) and appends the verdict to the KB's audit log.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from docqa.settings import ComplianceMode
from docqa.text.citations import cited_numbers
from service.compliance.audit import AuditLog
from service.compliance.filter import Verdict, VerdictKind, build_filter

_LOGS: dict[Path, AuditLog] = {}
_LOGS_LOCK = threading.Lock()
STAGE_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"  # a stage name in requests and in the data files
_STAGE = re.compile(STAGE_PATTERN)


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token (<=128 printable ASCII chars), else a new one."""
    if value and len(value) <= 128 and value.isascii() and value.isprintable() and value.strip() == value:
        return value
    return new_request_id()


def audit_log(path: Path) -> AuditLog:
    with _LOGS_LOCK:
        if path not in _LOGS:
            _LOGS[path] = AuditLog(path)
        return _LOGS[path]


def filter_enabled(kb) -> bool:
    """True when the KB's answers are reviewed before a user sees them (the compliance filter, or
    personal-data redaction): streaming must then hold the text until the verdict, or a phone number
    could leave in a delta before the final text masks it."""
    from docqa.settings import RedactMode

    s = kb.settings.compliance_for(kb.name)
    return s.compliance is not ComplianceMode.OFF or s.redact is not RedactMode.OFF


def warm_up_compliance(kb) -> None:
    """Build the KB's filter and embed its approved replies now, so bad compliance data is a
    start-up error (shown by /readyz) rather than a failure of the first request."""
    filt = build_filter(kb.settings, kb.name, kb.embedder)
    filt.warm_up()
    if filt.config.mode is not ComplianceMode.OFF and filt.config.audit_path is not None:
        audit_log(filt.config.audit_path).check_writable()


def review(kb, question: str, result: Any, *, stage: str | None = None, request_id: str | None = None,
           evidence: Mapping[int, str] | Sequence[str] | None = None) -> Any:
    """Filter ``result`` (an AnswerResult) and audit the verdict; see the module docstring.

    ``evidence`` is every passage the answerer was given, by citation number; by default the
    result's citations. A refusal is not filtered in guard mode (it is already the safe reply),
    but is audited; in snap mode it is snapped like any draft, so users only see approved text.
    """
    filt = build_filter(kb.settings, kb.name, kb.embedder)
    if evidence is None:
        evidence = {int(c["n"]): str(c.get("text", "")) for c in result.citations}
    if filt.config.mode is ComplianceMode.OFF:
        verdict = filt.check(question, result.answer, evidence, stage)  # personal data only
        return _redacted_citations(filt, apply_verdict(result, verdict))[0]
    if (result.refused or getattr(result, "fixed_text", False)) and filt.config.mode is ComplianceMode.GUARD:
        what = "refusal" if result.refused else "fixed notice"
        verdict = Verdict(result.answer, True, f"{what}: nothing to ground", VerdictKind.SKIPPED)
    else:
        verdict = filt.check(question, result.answer, evidence, stage, quotes=getattr(result, "quotes", None),
                             known=_stored_vectors(kb, filt, result.citations))
    return _conclude(filt, kb.name, question, result, verdict, stage, request_id)


def _stored_vectors(kb, filt, citations) -> dict:
    """The vectors the KB stored at ingest for the cited passages' sentences, when the claim check's encoder
    is the KB's: a quoted sentence and its clauses are then not encoded again (an extractive answer's claim
    check encodes only docqa's own wording)."""
    evidence = getattr(kb, "evidence", None) if filt.claims is not None and filt.claims.reuses(kb.embedder) else None
    if evidence is None:
        return {}
    return evidence.sentence_vectors((int(c["unit_id"]), str(c.get("text", ""))) for c in citations
                                     if c.get("unit_id") is not None)


def review_streamed(kb, question: str, result: Any, reviewed, *, stage: str | None = None,
                    request_id: str | None = None) -> Any:
    """``review`` for an answer that was reviewed as it streamed (stream.py ``StreamReview`` ``reviewed``):
    ``result`` is built on the released text; the verdict is the stream's, and the audit record also keeps
    the whole draft the LLM wrote and what the client was sent before the verdict."""
    filt = reviewed.filt
    verdict = reviewed.verdict(result.answer, bool(result.refused))
    extra = {"draft": reviewed.draft, "streamed": reviewed.sent, "dropped": reviewed.dropped,
             "stopped_early": reviewed.failed is not None}
    return _conclude(filt, kb.name, question, result, verdict, stage, request_id, extra)


def _conclude(filt, kb: str, question: str, result: Any, verdict: Verdict, stage: str | None,
              request_id: str | None, extra: dict | None = None) -> Any:
    """``result`` with the verdict applied and citations redacted; the verdict appended to the audit log."""
    final, redactions = _redacted_citations(filt, apply_verdict(result, verdict))
    if filt.config.audit_path is not None and filt.config.mode is not ComplianceMode.OFF:
        record = audit_record(kb, question, result, verdict, stage, request_id, filt.config.mode)
        record["redactions"] = redactions
        record.update(extra or {})
        audit_log(filt.config.audit_path).append(record)
    return final


def _redacted_citations(filt, result: Any) -> tuple[Any, dict[str, int]]:
    """Every citation's text as a user may see it (``ComplianceFilter.redact``); the audit log keeps
    the unit ids, so auditors can read the original passages."""
    total: dict[str, int] = {}
    cites = []
    for c in result.citations:
        text, counts = filt.redact(str(c.get("text", "")))
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        cites.append({**c, "text": text} if counts else c)
    if not total:
        return result, total
    return dataclasses.replace(result, citations=cites), total


def screen_question(kb, question: str, *, stage: str | None = None, request_id: str | None = None):
    """An ``AnswerResult`` with the stage's fallback when the question itself must not be answered
    (a blocklisted claim in it, or a forbidden stage), audited; None to answer it as usual."""
    from service.answering.result import AnswerResult

    filt = build_filter(kb.settings, kb.name, kb.embedder)
    verdict = filt.screen_question(question, stage)
    if verdict is None:
        return None
    result = AnswerResult(answer=verdict.text, refused=False, query=question, fallback=True,
                          reason=f"compliance {verdict.kind.value}: {verdict.public_reason or verdict.reason}")
    if filt.config.audit_path is not None:
        record = audit_record(kb.name, question, result, verdict, stage, request_id, filt.config.mode)
        record.update(screened="question", draft=None)
        audit_log(filt.config.audit_path).append(record)
    return result


def redact_hits(kb, hits: list[dict]) -> list[dict]:
    """Search hits (``Hit.public()``) as a user may see them: their texts through ``redact``."""
    filt = build_filter(kb.settings, kb.name, kb.embedder)
    return [_redact_hit(filt, h) for h in hits]


def _redact_hit(filt, hit: dict) -> dict:
    out = dict(hit)
    for key in ("text", "title", "keyinfo", "matched_text", "label"):
        if isinstance(out.get(key), str):
            out[key] = filt.redact(out[key])[0]
    if isinstance(out.get("heading_path"), list):
        out["heading_path"] = [filt.redact(h)[0] if isinstance(h, str) else h for h in out["heading_path"]]
    return out


def apply_verdict(result: Any, verdict: Verdict) -> Any:
    """``result`` with the verdict's text; citations kept only where the text still cites them."""
    if verdict.kind in (VerdictKind.PASSED, VerdictKind.SKIPPED):
        return result
    still = set(cited_numbers(verdict.text))
    cites = [c for c in result.citations if int(c["n"]) in still]
    reason = f"compliance {verdict.kind.value}: {verdict.public_reason or verdict.reason}"
    return dataclasses.replace(result, answer=verdict.text, citations=cites, fallback=verdict.fallback, reason=reason)


def audit_record(kb: str, question: str, result: Any, verdict: Verdict, stage: str | None,
                 request_id: str | None, mode: ComplianceMode) -> dict[str, Any]:
    return {"request_id": request_id or new_request_id(), "kb": kb, "stage": stage, "mode": mode.value,
            "question": question, "draft": result.answer, "verdict": verdict.kind.value,
            "passed": verdict.passed, "reason": verdict.reason, "text": verdict.text,
            "score": None if verdict.score is None else round(verdict.score, 4), "reply_id": verdict.reply_id,
            "refused": bool(result.refused), "citations": [c.get("n") for c in result.citations],
            "citation_units": [c.get("unit_id") for c in result.citations]}

