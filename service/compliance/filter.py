"""The compliance filter: ``check(question, answer, evidence, stage) -> Verdict(text, passed, reason)``.

Order of checks (prompts/compliance/README.md for the data files):

1. mode ``off`` -> the draft as is.
2. blocklist hit (terms, regexes) -> fallback, in every mode.
3. ``guard``: every sentence grounded and every [n] a given passage -> the draft; otherwise the
   fallback (``guard_action: fallback``) or the draft without its unsupported sentences
   (``guard_action: drop``; fallback when nothing is left).
4. ``snap``: the closest approved reply of the request's stage and language when its similarity
   reaches ``snap_threshold``; otherwise the fallback.

"The fallback" is the reply for the request's ``stage`` in fallbacks.yaml, else the universal one,
in the question's language. A filter is built once per KB and configuration by ``filter_for``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ingest.settings import ComplianceMode, GuardAction, Settings

from .blocklist import Blocklist
from .fallbacks import Fallbacks, language_of
from .guard import check_grounding, strip_citations
from .snap import ApprovedLibrary

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "prompts" / "compliance"


class VerdictKind(StrEnum):
    PASSED = "passed"  # the draft, unchanged
    DROPPED = "dropped"  # the draft without its unsupported sentences (guard_action: drop)
    SNAPPED = "snapped"  # an approved reply
    FALLBACK = "fallback"  # the stage's or the universal fallback reply
    SKIPPED = "skipped"  # not checked (filter off; a refusal in guard mode)


class ComplianceConfigError(ValueError):
    """Compliance data that cannot be used (a fallback that is itself blocklisted, a bad file)."""


@dataclass(frozen=True)
class Verdict:
    """``text`` is what the user gets; ``passed`` is True only when that is the draft unchanged."""

    text: str
    passed: bool
    reason: str
    kind: VerdictKind = VerdictKind.PASSED
    stage: str | None = None  # the stage whose fallback or approved reply was used
    reply_id: str | None = None  # the approved reply (snap)
    score: float | None = None  # the similarity the decision turned on

    @property
    def fallback(self) -> bool:
        return self.kind is VerdictKind.FALLBACK


@dataclass(frozen=True)
class ComplianceConfig:
    mode: ComplianceMode
    guard_threshold: float
    guard_action: GuardAction
    snap_threshold: float
    directory: Path
    audit_path: Path | None

    @classmethod
    def from_settings(cls, settings: Settings, kb: str) -> ComplianceConfig:
        """The effective configuration of KB ``kb``: settings with its ``kb_compliance`` overrides."""
        s = settings.compliance_for(kb)
        directory = Path(s.compliance_dir).expanduser().resolve() if s.compliance_dir else DEFAULT_DIR
        if s.audit_log is None:
            audit = s.home / kb / "audit.jsonl"
        elif s.audit_log.strip().lower() in ("off", "none", ""):
            audit = None
        else:
            audit = Path(s.audit_log.replace("{kb}", kb)).expanduser().resolve()
        return cls(s.compliance, s.guard_threshold, s.guard_action, s.snap_threshold, directory, audit)


class ComplianceFilter:
    """Loads the data of ``config.directory`` at construction (cheap: text files); the approved
    library is embedded on ``warm_up`` or first use. Thread-safe after construction."""

    def __init__(self, config: ComplianceConfig, embedder):
        self.config = config
        self.embedder = embedder
        if config.mode is not ComplianceMode.OFF and not config.directory.is_dir():
            raise ComplianceConfigError(f"compliance_dir {config.directory} is not a directory")
        self.blocklist = Blocklist.load(config.directory)
        self.fallbacks = Fallbacks.load(config.directory) if config.mode is not ComplianceMode.OFF else None
        self.library = ApprovedLibrary.load(config.directory, embedder)
        self._validate()

    def _validate(self) -> None:
        """Replies we fall back to must themselves pass the blocklist, or a hit would loop into a
        non-compliant reply; found at start-up, not in front of a user."""
        texts = [(f"fallbacks.yaml {w}", t) for w, t in (self.fallbacks.texts() if self.fallbacks else [])]
        texts += [(f"approved.jsonl {r.id}", r.text) for r in self.library.replies]
        for where, text in texts:
            hit = self.blocklist.find(text)
            if hit:
                raise ComplianceConfigError(f"{self.config.directory}: {where} breaks the blocklist ({hit.describe()})")
        if self.config.mode is ComplianceMode.SNAP and not self.library.replies:
            raise ComplianceConfigError(f"{self.config.directory}: snap mode needs approved.jsonl with replies")

    def warm_up(self) -> None:
        if self.config.mode is ComplianceMode.SNAP:
            self.library.warm_up()

    def check(self, question: str, answer: str, evidence: Mapping[int, str] | Sequence[str],
              stage: str | None = None) -> Verdict:
        """The verdict on draft ``answer`` to ``question`` given the passages ``evidence``
        (``evidence[0]`` or key 1 is passage [1]) at dialogue ``stage``."""
        mode = self.config.mode
        if mode is ComplianceMode.OFF:
            return Verdict(answer, True, "compliance filter off", VerdictKind.SKIPPED)
        if not answer.strip():
            return self._fallback(question or answer, stage, "the draft is empty")
        hit = self.blocklist.find(answer)
        if hit:
            return self._fallback(question or answer, stage, hit.describe())
        if mode is ComplianceMode.GUARD:
            return self._guard(question, answer, evidence, stage)
        return self._snap(question, answer, stage)

    def _guard(self, question: str, answer: str, evidence, stage: str | None) -> Verdict:
        report = check_grounding(answer, evidence, self.embedder, self.config.guard_threshold)
        low = min((s.score for s in report.checked), default=None)
        if report.grounded:
            return Verdict(answer, True, f"grounded: {report.describe()}", VerdictKind.PASSED, score=low)
        if self.config.guard_action is GuardAction.DROP:
            kept = report.kept_text()
            if kept:
                return Verdict(kept, False, f"dropped unsupported sentences: {report.describe()}",
                               VerdictKind.DROPPED, score=low)
        return self._fallback(question or answer, stage, f"ungrounded: {report.describe()}", score=low)

    def _snap(self, question: str, answer: str, stage: str | None) -> Verdict:
        lang = language_of(question or answer)
        match = self.library.best(strip_citations(answer), lang, stage)
        thr = self.config.snap_threshold
        if match.reply is not None and match.score >= thr:
            return Verdict(match.reply.text, False, f"snapped to approved reply {match.reply.id!r} "
                           f"(similarity {match.score:.3f} >= {thr:.3f})", VerdictKind.SNAPPED,
                           stage=match.reply.stage, reply_id=match.reply.id, score=match.score)
        best = f"best {match.reply.id!r} {match.score:.3f} < {thr:.3f}" if match.reply else "no candidate reply"
        return self._fallback(question or answer, stage, f"no approved reply close enough ({best})",
                              score=match.score if match.reply else None)

    def _fallback(self, lang_text: str, stage: str | None, why: str, score: float | None = None) -> Verdict:
        fb = self.fallbacks.pick(stage, language_of(lang_text))
        which = f"fallback for stage {fb.stage!r}" if fb.stage else "universal fallback"
        return Verdict(fb.text, False, f"{why}; replied with the {which}", VerdictKind.FALLBACK,
                       stage=fb.stage, score=score)


_CACHE: dict[tuple, ComplianceFilter] = {}
_CACHE_LOCK = threading.Lock()


def _data_stamp(directory: Path) -> tuple:
    """Modification times of the data files: editing them takes effect without a restart."""
    return tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in
                 (directory / n for n in ("blocklist.txt", "blocklist_regex.txt", "approved.jsonl", "fallbacks.yaml")))


def build_filter(settings: Settings, kb: str, embedder) -> ComplianceFilter:
    """The filter for KB ``kb`` (cached per configuration, embedder and data-file version)."""
    config = ComplianceConfig.from_settings(settings, kb)
    key = (kb, config, id(embedder), _data_stamp(config.directory))
    with _CACHE_LOCK:
        f = _CACHE.get(key)
        if f is None:
            for old in [k for k in _CACHE if k[0] == kb]:
                del _CACHE[old]
            f = _CACHE[key] = ComplianceFilter(config, embedder)
    return f
