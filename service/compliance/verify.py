"""The guard's verifier for LLM drafts: the reader asked about each fact of a draft sentence.

Similarity cannot tell "试用期不得超过二个月" from "试用期不得超过六个月" when the passage holds both numbers
(the second for another term of contract), and a rule that looks the number up in the passage finds it.
The reader can: each number, date, amount or named entity of the sentence (``facts.py``) is blanked into a
question ("劳动合同期限一年以上不满三年的，试用期不得超过多少？"), the reader reads the evidence passages for it,
and its answer is compared with what the draft says:

- *confirmed*: it answers, confidently, with the draft's value (numbers compared as values, text by
  containment or character F1 >= .5);
- *contradicted*: it answers, confidently, with another value: the sentence is ungrounded, however similar
  it reads;
- *unknown*: it does not find an answer: the similarity and fact rules decide, as without a verifier.

A sentence whose every fact is confirmed is grounded by that, even below the similarity threshold (an LLM's
paraphrase of the right fact). Costs one reading (a few windows) per fact, LLM drafts only: extractive
answers are quotes and never reach it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from docqa.text.language import has_han

MAX_FACTS = 3  # facts checked per sentence (the longest first)
_ARABIC = re.compile(r"\d+(?:[,.]\d+)*\s*(?:%|％)?")
_PUNCT = re.compile(r"[\s\W_]+")


@dataclass
class Check:
    state: str  # confirmed | contradicted | unknown | none (no fact to ask about)
    detail: str = ""


def facts_of(sentence: str) -> list[str]:
    """The surface strings of the sentence's numbers (with the unit that follows) and named entities."""
    from service.compliance.facts import _UNIT_AFTER, _ZH_NUMERAL, entities

    t = unicodedata.normalize("NFKC", sentence)
    found: list[str] = []
    for rx in (_ARABIC, _ZH_NUMERAL):
        for m in rx.finditer(t):
            unit = _UNIT_AFTER.match(t, m.end())
            found.append(t[m.start():unit.end() if unit else m.end()].strip())
    found += sorted(entities(t), key=len, reverse=True)
    out: list[str] = []
    for f in found:
        if f and not any(f in o for o in out):
            out.append(f)
    return sorted(out, key=len, reverse=True)[:MAX_FACTS]


def blank(sentence: str, fact: str) -> str:
    """The sentence as a question about ``fact``."""
    t = unicodedata.normalize("NFKC", sentence).strip()
    numeric = bool(re.match(r"[\d零〇一二两三四五六七八九十百千万亿]", fact))
    if has_han(t):
        word = "多少" if numeric else "什么"
        return t.replace(fact, word, 1).rstrip("。．.!！;；，,") + "？"
    return t.replace(fact, "how many" if numeric else "what", 1).rstrip(".!;,") + "?"


def agrees(answer: str, fact: str) -> bool:
    """Whether the reader's answer states the draft's fact (numbers as values, text loosely)."""
    from docqa.reader.metrics import f1
    from service.compliance.facts import numbers

    na, nf = numbers(answer), numbers(fact)
    if nf:
        return bool({v for v, _ in nf} & {v for v, _ in na})
    a, f = (_PUNCT.sub("", unicodedata.normalize("NFKC", x).casefold()) for x in (answer, fact))
    return bool(a and f) and (f in a or a in f or f1(answer, [fact]) >= 0.5)


class QAVerifier:
    def __init__(self, reader, threshold: float = 0.5, windows: int = 4, tokens: int = 192):
        self.reader, self.threshold, self.windows, self.tokens = reader, threshold, windows, tokens

    def check(self, sentence: str, passages: list[str]) -> Check:
        from service.answering.reading import read_texts

        facts = facts_of(sentence)
        if not facts or not passages:
            return Check("none")
        confirmed = []
        for fact in facts:
            question = blank(sentence, fact)
            reading, texts = read_texts(self.reader, question, passages, self.windows, self.tokens)
            if reading is None or reading.p_answer < self.threshold or reading.kind != "span":
                return Check("unknown", f"the passages do not answer {question!r}")
            said = texts[reading.passage][reading.start:reading.end]
            if not agrees(said, fact):
                return Check("contradicted", f"the passages say {said!r} where the draft says {fact!r} "
                                             f"(P(answer) {reading.p_answer:.2f})")
            confirmed.append(fact)
        return Check("confirmed", ", ".join(confirmed))
