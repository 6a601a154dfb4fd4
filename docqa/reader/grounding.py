"""The grounding verifier: does a passage state what a draft sentence claims? (#27, item 4)

A draft sentence of an LLM ("劳动合同期限一年以上不满三年的，试用期不得超过六个月。") is read with a window of the
evidence the way the reader reads a question with a window: ``<s> claim </s></s> window </s>``. The network is
the reader's (docqa/reader/net.py, another trained file: ``verifier.safetensors``); its kind head says

- ``yes``: the window states the claim (a faithful paraphrase included);
- ``no``: the window states something else where the claim states a fact — a number, date, name or place taken
  from elsewhere in the same passage, the case similarity and fact look-ups let through;
- ``none``: the window does not speak to the claim.

``ClaimVerifier`` below is the guard's verifier (service/compliance/guard.py, ``guard_verifier``): *confirmed*
grounds a sentence even below the similarity threshold (an LLM's paraphrase of the right fact); *contradicted*
fails it however similar it reads; *unknown* leaves it to the similarity and fact rules. Only sentences that are
not quotes reach it (extractive answers never do). It replaced a verifier that blanked each fact into a question
for the reader and compared the answer, which failed right answers worded differently (grounded drafts passed
.79 -> .40).

Which windows are read is one rule, for training (finetune/reader/grounding.py) and serving (``ClaimVerifier``):
every window of each evidence passage (``CLAIM_LENGTH`` tokens), ranked by how well it covers the claim's terms
(docqa/text/coverage.py), the best ``WINDOWS`` read.
"""

from __future__ import annotations

from dataclasses import dataclass

from docqa.reader.windows import Tokens, Window, windows

CLAIM_LENGTH = 128  # tokens per window, claim included: a claim's evidence is a sentence or two
WINDOWS = 2  # windows read per claim


def claim_windows(tok: Tokens, claim: str, texts: list[str], k: int = WINDOWS) -> list[Window]:
    """The ``k`` windows of ``texts`` (by passage index) that best cover the claim's terms, best first."""
    from docqa.text.coverage import coverages

    q = tok.question(claim)
    wins: list[Window] = []
    for i, t in enumerate(texts):
        ids, offs = tok.passage(t)
        wins += windows(q, ids, offs, i, max_length=CLAIM_LENGTH)
    if len(wins) <= k:
        return wins
    cov = coverages(claim, [texts[w.passage][w.text_start:w.text_end] for w in wins])
    order = sorted(range(len(wins)), key=lambda i: (-float(cov[i]), i))
    return [wins[i] for i in order[:k]]


def slot_agrees(slot: str, claim: str) -> bool:
    """Whether the claim states what the window says in its slot: the slot's text in the claim (case, width and
    punctuation aside), or, for a number, the same value ("2个月" / "二个月")."""
    import re
    import unicodedata

    from docqa.text.facts import numbers

    def norm(x: str) -> str:
        return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", x).casefold())

    s, c = norm(slot), norm(claim)
    if s and s in c:
        return True
    ns = {v for v, _ in numbers(slot)}
    return bool(ns) and ns <= {v for v, _ in numbers(claim)}


def judge(claim: str, text: str, w: Window, start, end, kind) -> tuple[float, float, str]:
    """One window's word on a claim: (P(stated), P(states otherwise), the slot's text). P(stated) is the kind
    head's P(yes), discounted by the span head's confidence when its slot is not what the claim says; P(states
    otherwise) is P(no), or the slot's confidence when it disagrees, whichever is higher."""
    import numpy as np

    from docqa.reader.decode import best_span, softmax
    from docqa.reader.net import KINDS

    p = softmax(np.asarray(kind, dtype=np.float64))
    i, j, sp = best_span(np.asarray(start), np.asarray(end), w, text=text)
    slot = text[w.offsets[i - w.first][0]:w.offsets[j - w.first][1]]
    yes, no = float(p[KINDS.index("yes")]), float(p[KINDS.index("no")])
    if slot_agrees(slot, claim):
        return yes, no, slot
    return yes * (1.0 - sp), max(no, sp * (1.0 - float(p[KINDS.index("none")]))), slot


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
        """(window, P(stated), P(states otherwise), slot) of each window read (``judge``)."""
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
        _, _, other, slot = max(read, key=lambda r: r[2])
        if other >= self.threshold:
            return Check("contradicted", f"the passage says {slot!r} there (P {other:.2f})", best)
        return Check("unknown", f"P(stated) {best:.2f}", best)
