"""The compliance filter (per KB: off | guard | snap), fallback replies and the audit log.

Data flow position: ... -> LLM draft -> ``review`` (this package) -> final answer -> audit log.
``ComplianceFilter.check(question, answer, evidence, stage) -> Verdict(text, passed, reason)`` is
the interface of DESIGN.md; ``review`` applies it to an ``AnswerResult`` and records the verdict.
The data (blocklist, approved replies, fallbacks) lives in prompts/compliance/ (README.md there).
"""

from docqa.screening import BlockHit, Blocklist, BlocklistError
from docqa.text.language import Lang, lang_of
from service.compliance.audit import AuditLog, read_audit
from service.compliance.fallbacks import Fallbacks
from service.compliance.filter import (
    ComplianceConfig,
    ComplianceConfigError,
    ComplianceFilter,
    Verdict,
    VerdictKind,
    build_filter,
)
from service.compliance.guard import GuardReport, check_grounding
from service.compliance.review import (
    STAGE_PATTERN,
    clean_request_id,
    filter_enabled,
    redact_hits,
    review,
    review_streamed,
    screen_question,
    warm_up_compliance,
)
from service.compliance.snap import ApprovedLibrary, ApprovedReply
from service.compliance.stream import StreamReview, streams_by_sentence

__all__ = [
    "ApprovedLibrary", "ApprovedReply", "AuditLog", "BlockHit", "Blocklist", "BlocklistError", "ComplianceConfig",
    "ComplianceConfigError", "ComplianceFilter", "Fallbacks", "GuardReport", "Lang", "STAGE_PATTERN", "Verdict",
    "VerdictKind", "build_filter", "check_grounding", "clean_request_id", "filter_enabled", "lang_of",
    "read_audit", "redact_hits", "review", "review_streamed", "screen_question", "StreamReview",
    "streams_by_sentence", "warm_up_compliance",
]
