"""The guard's verifier for LLM drafts: the trained grounding verifier (docqa/reader/grounding.py) reads each
draft sentence that is not a quote with the evidence windows that best cover it.

Similarity cannot tell "试用期不得超过二个月" from "试用期不得超过六个月" when the passage holds both numbers
(the second for another term of contract), and a rule that looks the number up in the passage finds it. The
verifier reads the claim and the window together, as the reader reads a question:

- *confirmed*: some window states it (a faithful paraphrase included): the sentence is grounded by that, even
  below the similarity threshold;
- *contradicted*: no window states it and one states something else where it states a fact: the sentence is
  ungrounded however similar it reads;
- *unknown*: the windows do not speak to it: the similarity and fact rules decide, as without a verifier.

One batch of ``grounding.WINDOWS`` windows per sentence, LLM drafts only: extractive answers are quotes and never
reach it. An earlier verifier (before #27's trained one) blanked each fact into a question for the reader and
compared its answer; it failed right answers worded differently (grounded drafts passed .79 -> .40), so it went.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    state: str  # confirmed | contradicted | unknown | none (no evidence window to read)
    detail: str = ""
    p: float | None = None  # the verifier's P(the passages state it), when it has one


class ClaimVerifier:
    """The trained grounding verifier (docqa/reader/grounding.py): the claim read with the evidence windows that
    best cover it; *confirmed* when some window states it (P(stated) >= ``threshold``), *contradicted* when none
    does and one states otherwise (its slot, what the window says where the claim states its fact, is the
    detail), else *unknown*.
    One batch of ``grounding.WINDOWS`` windows (128 tokens) per draft sentence: LLM drafts only, quotes never
    reach it."""

    def __init__(self, model, threshold: float = 0.5):
        self.model, self.threshold = model, threshold
        # the languages its training claims were in (the shipped file: Chinese only, VERIFIER_MODEL.md); a claim in
        # another language gets "none" and the rules decide
        self.languages = tuple(model.record.get("languages") or ("zh",))

    def _read(self, claim: str, passages: list[str]) -> list[tuple]:
        """(window, P(stated), P(states otherwise), slot) of each window read (grounding.py ``judge``)."""
        from docqa.reader.grounding import claim_windows, judge

        wins = claim_windows(self.model.tokens, claim, passages)
        if not wins:
            return []
        start, end, kind = self.model.logits(wins)
        return [(w, *judge(claim, passages[w.passage], w, start[i], end[i], kind[i])) for i, w in enumerate(wins)]

    def p_stated(self, claim: str, passages: list[str]) -> float:
        """The highest P(stated) of the claim's windows (0 without windows)."""
        return max((r[1] for r in self._read(claim, passages)), default=0.0)

    def check(self, sentence: str, passages: list[str]) -> Check:
        from docqa.text.language import lang_of

        lang = lang_of(sentence).value
        if lang not in self.languages:
            return Check("none", f"the verifier reads {', '.join(self.languages)} claims, not {lang}")
        read = self._read(sentence, passages)
        if not read:
            return Check("none")
        best = max(r[1] for r in read)
        if best >= self.threshold:
            return Check("confirmed", f"P(stated) {best:.2f}", best)
        w, _, other, slot = max(read, key=lambda r: r[2])
        if other >= self.threshold:
            return Check("contradicted", f"passage [{w.passage + 1}] says {slot!r} there (P {other:.2f})", best)
        return Check("unknown", f"P(stated) {best:.2f}", best)
