"""The grounding verifier: does a passage state what a draft sentence claims? (#27, item 4)

A draft sentence of an LLM ("劳动合同期限一年以上不满三年的，试用期不得超过六个月。") is read with a window of the
evidence the way the reader reads a question with a window: ``<s> claim </s></s> window </s>``. The network is
the reader's (docqa/reader/net.py, another trained file: ``verifier.safetensors``); its kind head says

- ``yes``: the window states the claim (a faithful paraphrase included);
- ``no``: the window states something else where the claim states a fact — a number, date, name or place taken
  from elsewhere in the same passage, the case similarity and fact look-ups let through;
- ``none``: the window does not speak to the claim.

Which windows are read is one rule, for training (finetune/reader/grounding.py) and serving
(service/compliance/verify.py): every window of each evidence passage (``CLAIM_LENGTH`` tokens), ranked by how
well it covers the claim's terms (docqa/text/coverage.py), the best ``WINDOWS`` read.
"""

from __future__ import annotations

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

    from service.compliance.facts import numbers

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
