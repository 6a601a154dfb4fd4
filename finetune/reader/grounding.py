"""Training and held-out examples for the grounding verifier (docqa/reader/grounding.py), from SQuAD-style sets.

Each answerable question gives claims the way an LLM drafts them, and each claim is read with the window of
its passage that serving would read for it (``claim_windows``):

- ``statement``: the question turned into a statement with the wh-word replaced by the answer
  ("生命数耗完即算为踢爆。"); with the gold answer -> ``yes``, with a *swap* -> ``no``;
- ``sentence``: the passage sentence that holds the answer, cut to the clauses around it (a faithful
  shortening: not a quote once a middle clause goes) -> ``yes``; the same with the answer swapped -> ``no``;
- swaps come from the *same passage or article* (the case that beats similarity and fact look-ups): another
  number with the same unit when the answer is a number, another named entity when it is one, else another
  question's answer;
- ``none``: the statement with the passage minus the answer's sentence, and with the best-covering passage of
  another case/article (the window does not speak to the claim).

A window that does not hold the gold answer makes any claim ``none`` (it neither states nor contradicts). In a
window that holds it, the span head learns the *slot*: the gold answer's tokens, for the claim that states it and
for its swapped twin alike — what the window says where the claim states its fact (grounding.py compares the two).
Sets split by case / article as the reader's are (finetune/reader/data.py ``part_of``).
"""

from __future__ import annotations

import random
import re

from docqa.reader.decode import clauses, sentence_around
from docqa.reader.grounding import claim_windows
from docqa.reader.windows import Tokens, window_at
from docqa.text.language import lang_of
from finetune.reader.data import Example, Question, _other_passage

_WH = re.compile(r"什么时候|什麼時候|哪一年|哪年|哪一个|哪一個|哪个|哪個|哪些|哪里|哪裡|哪儿|哪位|哪国|哪國|什么|什麼|"
                 r"谁|誰|多少|何时|何時|何地|哪")
_EN_WH = re.compile(r"^(what|which|who|whom|when|where|how many|how much)\b\s*", re.I)
_Q_END = re.compile(r"[？?。！!\s]+$")
_LEADS = {"zh": ("", "", "根据材料，", "资料显示，", "据介绍，"), "en": ("", "", "According to the passage, ")}


def statement(question: str, answer: str, lang: str, lead: str = "") -> str:
    """The question turned into the answer statement an LLM would write (the wh-word replaced by the answer;
    no wh-word: "question：answer")."""
    q = _Q_END.sub("", question.strip())
    if lang == "zh":
        m = _WH.search(q)
        return lead + (q[: m.start()] + answer + q[m.end():] if m else f"{q}：{answer}") + "。"
    return f"{lead}{q}? The answer is {answer}."


NEAR = 300  # characters either side of the answer where a swapped-in name is looked for


def swap_for(q: Question, answer: str, same_article: list[Question], rng: random.Random) -> str | None:
    """Something else the same passage or article states, of the answer's kind when it has one: another number
    (with the same unit when there is one), another named entity near the answer, else another question's
    answer."""
    from docqa.text.facts import entities, number_strings, numbers

    def differs(x: str) -> bool:
        x = x.strip()
        return bool(x) and x not in answer and answer not in x and len(x) <= 40

    nums = numbers(answer)
    if nums:
        units = {u for _, u in nums}
        vals = {v for v, _ in nums}
        other = [f for f in number_strings(q.context) if numbers(f) and differs(f)
                 and not ({v for v, _ in numbers(f)} & vals)]
        cands = [f for f in other if {u for _, u in numbers(f)} & units] or other
        if cands:
            return rng.choice(cands)
    if entities(answer):
        at = q.answers[0][0] if q.answers else 0
        near = q.context[max(0, at - NEAR):at + len(answer) + NEAR]
        cands = sorted(e for e in entities(near, hmm=False) if differs(e))  # a swap needs candidates, not every name
        if cands:
            return rng.choice(cands)
    others = [o.answers[0][1] for o in same_article if o.qid != q.qid and o.answers and differs(o.answers[0][1])]
    return rng.choice(others) if others else None


def _label(tok: Tokens, claim: str, text: str, golds: list[str], kind: str) -> Example | None:
    wins = claim_windows(tok, claim, [text], k=1)
    if not wins:
        return None
    w = wins[0]
    held = any(g in text[w.text_start:w.text_end] for g in golds)
    return (w, kind if held else "none")


def claim_examples(questions: list[Question], tok: Tokens, rng: random.Random, pool: list[Question] | None = None,
                   sentence: float = 0.5, minus_answer: float = 0.25, other_passage: float = 0.25) -> list[Example]:
    """Labelled (claim, window) examples of ``questions`` (see the module docstring). The claim is the
    example's ``q.question``-like text: each Example carries a copy of its Question with the claim as the
    question (``how`` says which kind of claim)."""
    pool = pool or questions
    by_group: dict[str, list[Question]] = {}
    by_source: dict[str, list[Question]] = {}
    for q in pool:
        by_group.setdefault(q.group, []).append(q)
        by_source.setdefault(q.source, []).append(q)
    out: list[Example] = []

    def add(q: Question, claim: str, text: str, kind: str, how: str, like: Example | None = None) -> Example | None:
        """The claim with its own window; a swapped claim whose own window does not hold the gold answer is read
        with the window of the claim it was swapped from (``like``): the pair then differs only by the fact."""
        golds = [t for _, t in q.answers]
        got = _label(tok, claim, text, golds, kind)
        if got is None:
            return None
        w, label = got
        if label == "none" and like is not None and like.kind != "none":
            lw, label = like.window, kind
            w = window_at(tok.question(claim), lw.ids[lw.first:lw.last + 1], lw.offsets, 0, len(lw.offsets), lw.passage)
        cq = Question(q.qid, q.group, claim, text, label, q.answers, q.source)
        span = w.token_span(q.answers[0][0], q.answers[0][0] + len(q.answers[0][1])) \
            if label != "none" and text == q.context else None
        start, end = span or (0, 0)  # the slot: what the window says where the claim states its fact
        out.append(Example(cq, w, label, start, end, how=how))
        return out[-1]

    for q in questions:
        if q.kind != "span" or not q.answers:
            continue
        start, gold = q.answers[0]
        if not gold.strip() or len(gold) > 40:
            continue
        lang = lang_of(q.question + q.context[:50]).value
        lead = rng.choice(_LEADS[lang])
        swap = swap_for(q, gold, by_group.get(q.group, []), rng)
        first = add(q, statement(q.question, gold, lang, lead), q.context, "yes", "statement")
        if swap is not None:
            add(q, statement(q.question, swap, lang, lead), q.context, "no", "statement-swap", first)
        if rng.random() < sentence:
            short = shortened(q.context, start, start + len(gold), rng)
            if short and gold in short and len(short) >= len(gold) + 6:
                first = add(q, short, q.context, "yes", "sentence")
                if swap is not None:
                    add(q, short.replace(gold, swap, 1), q.context, "no", "sentence-swap", first)
        if rng.random() < minus_answer:
            a, b = sentence_around(q.context, start, start + len(gold))
            rest = (q.context[:a] + q.context[b:]).strip()
            if rest and all(t not in rest for _, t in q.answers):
                add(q, statement(q.question, gold, lang, lead), rest, "none", "minus-answer")
        if rng.random() < other_passage:
            other = _other_passage(q, by_source.get(q.source, []), rng)
            if other is not None:
                add(q, statement(q.question, gold, lang, lead), other, "none", "other-passage")
    return out


def shortened(text: str, start: int, end: int, rng: random.Random) -> str | None:
    """The sentence holding text[start:end], cut to the clause that holds it and (sometimes) the one before:
    what an LLM keeps of a long sentence. None when the sentence is one clause (a quote, which the guard
    passes without a model)."""
    a, b = sentence_around(text, start, end)
    parts = _commas(text, a, b)
    if len(parts) < 2:
        return None
    i = next((k for k, (x, y) in enumerate(parts) if x <= start < y), None)
    if i is None:
        return None
    lo = i - 1 if i > 0 and rng.random() < 0.6 else i
    hi = i + 1 if i + 1 < len(parts) and rng.random() < 0.3 else i
    if lo == 0 and hi == len(parts) - 1:
        return None
    s = text[parts[lo][0]:parts[hi][1]].strip().rstrip("，,；;、")
    return s + ("。" if lang_of(s).value == "zh" else ".") if s and s[-1] not in "。.!！?？" else s


_COMMA = re.compile(r"[，,；;]")


def _commas(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """The comma-separated parts of text[a:b] (the clauses of one sentence)."""
    return clauses(text, a, b, _COMMA)


def evaluate_claims(net, exs: list[Example], device: str = "cpu") -> dict:
    """Held-out figures: the share of ``yes`` claims passed (P(stated) >= .5, docqa/reader/grounding.py ``judge``)
    and of the others passed, by how the claim was made; ``score`` = balanced accuracy of passing (and of the kind
    head's P(yes) alone)."""
    import numpy as np

    from docqa.reader.decode import softmax
    from docqa.reader.grounding import judge
    from docqa.reader.metrics import balanced_accuracy
    from docqa.reader.net import KINDS
    from finetune.reader.train import predict

    if not exs:
        return {}
    yes = KINDS.index("yes")
    preds = predict(net, exs, device)
    p = [judge(e.q.question, e.q.context, e.window, s, en, k)[0] for e, (s, en, k) in zip(exs, preds, strict=True)]
    out_kind = [float(softmax(k.astype(np.float64))[yes]) for _, _, k in preds]
    truth = [e.kind == "yes" for e in exs]
    said = [x >= 0.5 for x in p]
    out: dict = {"windows": len(exs), "score": balanced_accuracy(truth, said),
                 "kind_head_balanced_accuracy": balanced_accuracy(truth, [x >= 0.5 for x in out_kind])}
    for how in sorted({e.how for e in exs}):
        idx = [i for i, e in enumerate(exs) if e.how == how]
        for label in ("yes", "no", "none"):
            sub = [i for i in idx if exs[i].kind == label]
            if sub:
                out[f"passed {how}/{label}"] = float(np.mean([said[i] for i in sub]))
    return out
