"""Negation and disclaimers: when words that would make a forbidden claim do not make it.

Two readings, one vocabulary:

- ``negated(text, start)``: a rule's match right after a negation or a warning is a disclaimer
  ("本产品不保证收益", "无法保证胜诉", "谨防稳赚不赔的骗局", "there are no guaranteed returns"). Only immediately
  before the match, so a comma ("不，稳赚不赔") or another word ("不少人说稳赚") leaves it a claim, and so does a
  question that asks for it ("是不是稳赚不赔", "能不能保证胜诉"). Used by the
  blocklist (docqa/screening/blocklist.py) for terms, variants, sounds and regexes alike.
- ``disclaims(piece)``: a clause that disclaims anywhere in it ("可能损失本金", "returns are not guaranteed") is
  not scored by the claim check (docqa/screening/claims.py): a sentence vector barely moves when "不" is added.
  Read clause by clause, so a disclaimer in one clause does not excuse a claim in the next.
"""

from __future__ import annotations

import re

# negations and warnings that turn the claim right after them into its denial
_NEGATING = ("不|没有|没|无法|不能|不会|并不|并非|未|不是|从不|绝不|决不|勿|别|禁止|严禁|不得|不要|杜绝|拒绝|反对|"
             "谨防|警惕|防范|提防")
_NEGATED_CJK = re.compile(f"(?:{_NEGATING})$")
_A_NOT_A = re.compile(r"(.)[不没]\1$")  # 是不是 / 有没有 / 能不能: a question, not a negation
_NEGATED_LATIN = re.compile(r"\b(?:no|not|never|without|nor|cannot|can't|beware of)\s+$")

DISCLAIMER = re.compile(
    r"不(?:保证|承诺|保本|保息|代表|构成|能保证|能承诺|一定|等于)|无法(?:保证|承诺)|不能(?:保证|承诺)|并非|非保本|"
    r"(?<!不)可能(?:会)?(?:亏损|损失|下跌|亏|产生)|存在.{0,6}风险|有风险|风险自担|谨慎|以.{0,12}为准|取决于|违法|"
    r"没有.{0,6}(?:零风险|无风险|稳赚|只赚不赔)|仅供参考|谨防|警惕|防范|提防|"
    r"not guaranteed|no guarantee|not a guarantee|(?:does|do|can|will) not (?:guarantee|promise)|"
    r"cannot (?:guarantee|promise)|can't (?:guarantee|promise)|(?:may|could|might|can) (?:lose|go down|fall)|"
    r"risk of loss|at risk|not (?:a|an) (?:deposit|investment advice|guide)|illegal|depends? on|decides? on|beware",
    re.IGNORECASE)


def negated(norm_text: str, start: int) -> bool:
    """Is the match at ``start`` of a normalised text negated (or warned against) right before it?"""
    before = norm_text[max(0, start - 12):start]
    if _A_NOT_A.search(before):
        return False
    return bool(_NEGATED_CJK.search(before) or _NEGATED_LATIN.search(before))


def disclaims(piece: str) -> bool:
    """Does this clause disclaim (deny, qualify or warn against) rather than claim?"""
    return bool(DISCLAIMER.search(piece))
