"""Review a draft while the LLM writes it: each sentence is sent as soon as it passes the checks that can be
made on it, so a stream under the filter still streams.

The whole-draft review (filter.py ``check``) needs the end of the answer; a stream held for it shows nothing
until the LLM has finished. ``StreamReview`` takes the draft in deltas and releases it sentence by sentence:

- a sentence is released only once text of the next one follows it (``complete_end``): the unfinished
  sentence is held, so a phone number, an ID or an address split across deltas never leaves half checked;
- a run of finished sentences passes, in order: the blocklist on all the text kept so far plus the run (a
  term split across two sentences is caught), the claim check on its sentences and clauses, in ``guard``
  mode the grounding of each sentence against the passages (a refusal sentence needs none), then personal
  data masked (or the fallback with ``redact: refuse``);
- a sentence that fails is never sent. With ``guard_action: drop`` an ungrounded sentence is left out and
  the stream goes on; any other failure stops the review (``failed``): the caller stops the LLM and ends
  the stream with the fallback.

``verdict(answer)`` is the verdict on what was released, in the shape filter.py gives (the audit log and the
final ``done`` event carry it). ``snap`` mode cannot stream — its reply is chosen from the whole draft — and
is held for the verdict by the caller (``streams_by_sentence``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from docqa.screening import find_pii, mask_pii
from docqa.settings import ComplianceMode, GuardAction, RedactMode
from docqa.text.citations import cited_numbers
from docqa.text.language import has_han
from docqa.text.refusal import is_refusal
from docqa.text.sentences import complete_end
from service.compliance.filter import ComplianceFilter, Verdict, VerdictKind, safe_evidence
from service.compliance.guard import check_grounding, draft_sentences, evidence_sentences


def streams_by_sentence(filt: ComplianceFilter) -> bool:
    """True when the filter's checks can be made sentence by sentence (every mode but ``snap``)."""
    return filt.config.mode is not ComplianceMode.SNAP


class StreamReview:
    """Feed the draft's deltas (``feed``), then ``finish``; both return the text to send now."""

    def __init__(self, filt: ComplianceFilter, question: str, evidence: Mapping[int, str], stage: str | None):
        self.filt, self.question, self.stage = filt, question, stage
        self.config = filt.config
        self.evidence = safe_evidence(evidence)
        self.draft = ""  # everything the LLM wrote
        self.sent = ""  # what was released (masked)
        self.failed: Verdict | None = None
        self.dropped: list[str] = []  # ungrounded sentences left out (guard_action: drop)
        self.grounded = 0  # sentences with content that the guard checked and kept
        self.low: float | None = None  # the lowest grounding score of those
        self.masked: set[str] = set()  # kinds of personal data masked
        self.seconds = 0.0  # spent reviewing
        self._reviewed = 0  # offset in ``draft`` up to which the text was reviewed
        self._kept = ""  # the reviewed text kept, unmasked
        self._warm: threading.Thread | None = None
        if self.config.mode is ComplianceMode.GUARD and self.evidence:
            # the passages' sentence vectors while the LLM writes its first sentence: the first check then
            # embeds only that sentence
            sentences = evidence_sentences(self.evidence)
            self._warm = threading.Thread(target=filt.embedder.encode_docs, args=(sentences,), daemon=True,
                                          name="docqa-guard-warm")
            self._warm.start()

    def feed(self, delta: str) -> str:
        if self.failed is not None or not delta:
            return ""
        self.draft += delta
        end = complete_end(self.draft[self._reviewed:])
        return self._review(self.draft[self._reviewed:self._reviewed + end]) if end else ""

    def finish(self) -> str:
        """The rest of the draft (its last sentence), reviewed."""
        rest = self.draft[self._reviewed:]
        return self._review(rest) if self.failed is None and rest else ""

    # --- one run of finished sentences ---------------------------------------------------------------------
    def _review(self, chunk: str) -> str:
        t0 = time.perf_counter()
        try:
            return self._checked(chunk)
        finally:
            self.seconds += time.perf_counter() - t0

    def _checked(self, chunk: str) -> str:
        self._reviewed += len(chunk)
        mode = self.config.mode
        if mode is not ComplianceMode.OFF:
            hit = self.filt.blocklist.find(self._kept + chunk)
            if hit:
                return self._fail(hit.describe(), f"the draft breaks the blocklist ({hit.kind})")
            claim = self.filt.claims.find(chunk) if self.filt.claims else None
            if claim:
                return self._fail(claim.describe(), f"the draft makes a forbidden claim ({claim.name})")
        if mode is ComplianceMode.GUARD:
            chunk = self._ground(chunk)
            if self.failed is not None or not chunk:
                return ""
        return self._release(chunk)

    def _ground(self, chunk: str) -> str:
        """``chunk`` without what the guard drops ("" and ``failed`` set when it falls back)."""
        todo = "\n".join(s for s in draft_sentences(chunk) if cited_numbers(s) or not is_refusal(s))
        if not todo:
            return chunk  # only the refusal, or nothing with content: the final verdict decides
        if self._warm is not None:
            self._warm.join()
            self._warm = None
        report = check_grounding(todo, self.evidence, self.filt.embedder, self.config.guard_threshold,
                                 self.filt.verifier)
        for s in report.checked:
            if s.supported:
                self.grounded += 1
                self.low = s.score if self.low is None else min(self.low, s.score)
        if not report.unsupported:
            return chunk
        if self.config.guard_action is not GuardAction.DROP:
            return self._fail(f"ungrounded: {report.describe()}", "the draft is not supported by the passages")
        bad = {s.text for s in report.unsupported}
        self.dropped += sorted(bad)
        kept = [s for s in draft_sentences(chunk) if s not in bad]
        tail = chunk[len(chunk.rstrip()):]
        joiner = "" if has_han("".join(kept)[:50]) else " "
        return joiner.join(kept) + tail if kept else ""

    def _release(self, chunk: str) -> str:
        """``chunk`` as the client may see it: personal data masked in the context of all kept text."""
        before, self._kept = self._kept, self._kept + chunk
        if self.config.redact is RedactMode.OFF:
            self.sent += chunk
            return chunk
        hits = find_pii(self._kept)
        new = [h for h in hits if h.end > len(before)]
        if new and self.config.redact is RedactMode.REFUSE:
            why = f"personal data in the answer ({', '.join(sorted({h.kind for h in new}))})"
            return self._fail(why, why)
        self.masked |= {h.kind for h in new}
        masked = mask_pii(self._kept, hits)
        out = masked[len(self.sent):] if masked.startswith(self.sent) else mask_pii(chunk)
        self.sent += out
        return out

    def _fail(self, why: str, public: str) -> str:
        self.failed = self.filt.fallback(self.question or self.draft, self.stage, why, public=public)
        return ""

    # --- the verdict on what was released ---------------------------------------------------------------
    def verdict(self, answer: str, refused: bool = False) -> Verdict:
        """The verdict whose text is ``answer`` — the released text, with whatever the answerer adds at the end
        (a citation it attributed) — or the fallback. ``refused``: the LLM said the passages hold no answer."""
        mode = self.config.mode
        if self.failed is not None:
            return self.failed
        if mode is ComplianceMode.OFF:
            if self.masked:
                kinds = ", ".join(sorted(self.masked))
                return Verdict(answer, False, f"compliance filter off; personal data masked ({kinds})",
                               VerdictKind.REDACTED, public_reason=f"personal data masked ({kinds})")
            return Verdict(answer, True, "compliance filter off", VerdictKind.SKIPPED)
        if refused:
            return Verdict(answer, True, "refusal: nothing to ground", VerdictKind.SKIPPED)
        if mode is ComplianceMode.GUARD and not self.grounded:
            why = "the draft has no sentence to check" if not self.dropped else \
                f"all {len(self.dropped)} sentence(s) lack evidence"
            return self.filt.fallback(self.question or answer, self.stage, f"ungrounded: {why}",
                                      public="the draft is not supported by the passages")
        masked = f"personal data masked ({', '.join(sorted(self.masked))})" if self.masked else ""
        if self.dropped:
            why = f"dropped {len(self.dropped)} unsupported sentence(s) as the stream went"
            public = "unsupported sentences were removed" + (f"; {masked}" if masked else "")
            return Verdict(answer, False, f"{why}{'; ' + masked if masked else ''}", VerdictKind.DROPPED,
                           score=self.low, public_reason=public)
        what = f"grounded sentence by sentence: all {self.grounded} sentence(s) grounded" \
            if mode is ComplianceMode.GUARD else "no blocklisted term or forbidden claim"
        if masked:
            return Verdict(answer, False, f"{what}; {masked}", VerdictKind.REDACTED, score=self.low,
                           public_reason=masked)
        return Verdict(answer, True, what, VerdictKind.PASSED, score=self.low)
