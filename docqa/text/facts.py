"""Facts of a sentence — numbers, dates, amounts and named entities — and whether its evidence has them.

A grounding score (cosine + word overlap) cannot tell "试用期不得超过二个月" from "试用期不得超过三个月":
the sentences are 95% alike. Facts can. ``missing_facts(sentence, evidence)`` lists the facts of an
answer sentence that its evidence does not state; the guard treats a sentence with any as
ungrounded, however similar it is.

- numbers: Arabic (``1,200``, ``3.5``, ``15%``, the parts of ``2019-10-01``) and Chinese numerals
  that count something (``二个月``, ``第十九条``, ``三千元``, ``一百零二``), compared as values, so
  "2个月" in an answer matches "二个月" in the evidence; a bare "一" inside a word ("统一", "一般")
  is no number, nor is a multiplier without a digit ("多少万元"); "百分之二十五" is 25 %, "1.5万元"
  is 15000 元 as "一万五千元" is;
- entities: Latin-script names and codes (a capitalised word not at the sentence start, an acronym,
  a word with digits: "Beijing", "SEV1", "ISO 9001") and Chinese proper nouns (jieba's person,
  place, organisation and other-proper-noun tags), compared as text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from docqa.text.numerals import zh_numeral

_ARABIC = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_ZH_NUM = "零〇一二两三四五六七八九十百千万亿"
# A Chinese numeral is a number when it counts something: after 第, or before a unit or classifier.
_COUNTED = ("个月|个工作日|周年|年|月|日|号|天|周|小时|分钟|秒|岁|元|块|角|分|万|亿|倍|次|条|款|项|章|节|编|"
            "人|名|位|家|"
            "件|份|种|类|批|台|辆|套|张|层|级|期|届|成|%|％|公里|千米|米|厘米|公斤|千克|克|吨|亩|平方米")
_ZH_NUMERAL = re.compile(rf"(?<=第)[{_ZH_NUM}]+|[{_ZH_NUM}]+(?=(?:{_COUNTED}))")
# 百分之二十五 is 25%: the 百 of 百分之 is no number of its own, and what follows it counts even without a unit.
_PERCENT = re.compile(rf"百分之([{_ZH_NUM}]+|\d+(?:\.\d+)?)")
_MULTIPLIER_ONLY = re.compile("[百千万亿]+")  # "多少万元", "亿元", "千万不要": a multiplier with no digit is no number
_UNIT_AFTER = re.compile(rf"\s*({_COUNTED})")
_LATIN_ENTITY = re.compile(r"\b(?:[A-Z]{2,}[A-Za-z0-9]*|[A-Za-z]+\d+[A-Za-z0-9]*|[A-Z][a-z]+(?:[ -][A-Z][a-z]+)*)\b")
_PROPER_TAGS = ("nr", "ns", "nt", "nz")


def numbers(text: str) -> set[tuple[str, str]]:
    """The numbers of ``text`` as (canonical value, unit) pairs: ("2", "个月"), ("19", ""), ("1200", "元").
    The unit is what the number counts (empty when nothing follows), so "三个月" and "三年" differ."""
    t = unicodedata.normalize("NFKC", text)
    out: set[tuple[str, str]] = set()
    for m in _PERCENT.finditer(t):
        v = m.group(1)
        v = _canon(v) if v[0].isdigit() else zh_numeral(v)
        if v is not None:
            out.add((str(v), "%"))
    for m in _ARABIC.finditer(t):
        if not _in_percent(t, m.start()):
            out.add(_arabic(t, m))
    for m in _zh_numerals(t):
        v = zh_numeral(m.group(0))
        if v is not None:
            out.add((str(v), _unit_at(t, m.end())))
    return out


def _arabic(text: str, m: re.Match) -> tuple[str, str]:
    """An Arabic number and its unit; "1.5万元" is 15000 元, as "一万五千元" reads."""
    value, end = m.group(0).replace(",", ""), m.end()
    if end < len(text) and text[end] in "万亿":
        from decimal import Decimal

        scaled = Decimal(value) * (10_000 if text[end] == "万" else 100_000_000)
        value, end = format(scaled.normalize(), "f"), end + 1
    return _canon(value), _unit_at(text, end)


def _in_percent(text: str, pos: int) -> bool:
    return text.endswith("百分之", 0, pos)


def _zh_numerals(text: str):
    """The Chinese numerals of ``text`` that count something, without 百分之's 百 and bare multipliers."""
    for m in _ZH_NUMERAL.finditer(text):
        if _MULTIPLIER_ONLY.fullmatch(m.group(0)) or text.startswith("分之", m.end()) or _in_percent(text, m.start()):
            continue
        yield m


def number_strings(text: str) -> list[str]:
    """The surface strings (NFKC) of the numbers of ``text``, each with the unit after it ("二个月", "1,200元")."""
    t = unicodedata.normalize("NFKC", text)
    out = []
    out += [m.group(0) for m in _PERCENT.finditer(t)]
    for m in [*(m for m in _ARABIC.finditer(t) if not _in_percent(t, m.start())), *_zh_numerals(t)]:
        unit = _UNIT_AFTER.match(t, m.end())
        out.append(t[m.start():unit.end() if unit else m.end()].strip())
    return out


def _unit_at(text: str, pos: int) -> str:
    m = _UNIT_AFTER.match(text, pos)
    return m.group(1) if m else ""


def _canon(num: str) -> str:
    if "." in num:
        num = num.rstrip("0").rstrip(".")
    return num.lstrip("0") or "0"


def entities(text: str, hmm: bool = True) -> set[str]:
    """Named entities of ``text``: Latin names/codes and jieba-tagged Chinese proper nouns (``hmm=False``: only
    the words jieba's dictionary knows, without its HMM for unknown ones — many times faster on long text)."""
    t = unicodedata.normalize("NFKC", text)
    first = re.match(r"\s*[A-Za-z]+", t)
    out = {m.group(0) for m in _LATIN_ENTITY.finditer(t)
           if not (first and m.start() == first.start() + len(first.group(0)) - len(first.group(0).lstrip())
                   and " " not in m.group(0) and not m.group(0).isupper() and not any(c.isdigit() for c in m.group(0)))}
    out |= _zh_proper_nouns(t, hmm)
    return out


@lru_cache(maxsize=4096)
def _zh_proper_nouns(text: str, hmm: bool = True) -> frozenset[str]:
    from docqa.text.language import has_han
    from docqa.text.tokenize import _get_jieba

    if not has_han(text):
        return frozenset()

    _get_jieba()
    import jieba.posseg as pseg

    return frozenset(w for w, tag in pseg.lcut(text, HMM=hmm) if tag in _PROPER_TAGS and len(w) >= 2)


def misplaced_terms(sentence: str, wide: str, everything: str) -> list[str]:
    """Words of ``sentence`` that the given passages contain, but not where the sentence is grounded.

    A draft that joins a true claim with a fact from elsewhere in the same passage ("X was born in
    1990" where the passage gives 1990 as the year X moved) reads as grounded to every similarity
    measure; what gives it away is a word taken from another part of the evidence. Words found
    nowhere in the passages are a paraphrase's own and pass; stopwords and one-character Chinese
    words are ignored."""
    from docqa.text.language import has_han
    from docqa.text.tokenize import STOPWORDS, query_terms

    near, far = _norm(wide), _norm(everything)
    out = []
    for t in query_terms(sentence):
        if t in STOPWORDS or (len(t) < 2 if has_han(t) else len(t) < 3):
            continue
        if t in far and t not in near:
            out.append(t)
    return out


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def missing_facts(sentence: str, evidence: str, entity_evidence: str | None = None) -> list[str]:
    """Facts of ``sentence`` that the evidence does not state. A number with a unit needs the same
    value with the same unit (or bare) in ``evidence``; a bare number, the value with any unit.
    Entities are looked up in ``entity_evidence`` (default: ``evidence``), which may be wider: a
    claim's subject is often named a sentence before the fact."""
    ev = numbers(evidence)
    values = {v for v, _ in ev}
    missing = [f"{v}{u}" for v, u in sorted(numbers(sentence))
               if not ((v, u) in ev or (v, "") in ev or (not u and v in values))]
    ev_text = unicodedata.normalize("NFKC", evidence if entity_evidence is None else entity_evidence).casefold()
    missing += [e for e in sorted(entities(sentence)) if e.casefold() not in ev_text]
    return missing
