"""Pinpoint labels of statutes and standards: 第十九条第一款, 4.1.2, and the article a question names.

``ingest.structure`` sets a block's ``label`` while it reads a document; this module is the label grammar
both sides share: numerals as statutes write them, ``pinpoint`` for citations, and ``parse_reference``
for the exact article lookup on the query side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docqa.text.language import HAN_CLASS
from docqa.text.numerals import to_zh, zh_numeral

NUM = "[零〇○一二三四五六七八九十百千两\\d]{1,8}"
CN_NUM = "[一二三四五六七八九十]{1,4}"

_REF = re.compile(rf"第\s*({NUM})\s*条(?:\s*之\s*({CN_NUM}|\d{{1,2}}))?(?:\s*第\s*({NUM})\s*款)?"
                  rf"(?:\s*第\s*({NUM})\s*项)?")
_LAW = re.compile(rf"《([^《》]{{2,60}})》|([{HAN_CLASS}]{{2,30}}?(?:法|条例|办法|规定|规则|细则|决定|通知|解释|准则))"
                  r"(?=\s*第)")


def cn_to_int(s: str) -> int | None:
    """"一百零二" -> 102, "十九" -> 19, "19" -> 19; None when it is not a number (``docqa.text.numerals``)."""
    return zh_numeral(s.strip())


def int_to_cn(n: int) -> str:
    """102 -> "一百零二", 19 -> "十九": how statutes number their articles (``docqa.text.numerals``)."""
    return to_zh(n)


def article_label(n: int, sub: int | None = None) -> str:
    return f"第{int_to_cn(n)}条" + (f"之{int_to_cn(sub)}" if sub else "")


def kuan(label: str, key: str) -> int | None:
    m = re.match(rf"第({NUM})款", label[len(key):])
    return cn_to_int(m.group(1)) if m else None


def pinpoint(title: str, label: str) -> str:
    """《title》第十九条第一款, or 《title》 4.1.2 for a standard's clause; "" without a label."""
    if not label:
        return ""
    if not title:
        return label
    return f"《{title}》{label}" if label.startswith("第") else f"《{title}》 {label}"


@dataclass(frozen=True)
class Reference:
    """An article a question names: 劳动合同法第十九条 / 第19条第二款 / 《公司法》第十条之一."""

    article: int
    sub: int | None = None  # 之一
    clause: int | None = None  # 款
    item: int | None = None  # 项
    law: str = ""  # the law's name as written ("" when the question names none)

    @property
    def key(self) -> str:
        return article_label(self.article, self.sub)

    def matches(self, label: str) -> bool:
        """Whether a unit labelled ``label`` is (part of) the named article, 款 and 项."""
        if not label.startswith(self.key) or label[len(self.key):].startswith("之"):
            return False
        rest = label[len(self.key):]
        if self.clause is None or not rest:
            return True
        k = kuan(label, self.key)
        if k is None:  # "第十九条第二项": a one-款 article's item
            return self.clause == 1
        if "至" in rest:
            m = re.search(rf"至第({NUM})款", rest)
            hi = cn_to_int(m.group(1)) if m else k
            return k <= self.clause <= (hi or k)
        return k == self.clause

    def names(self, title: str) -> bool:
        """Whether a document titled ``title`` is the law the question names (any, when it names none)."""
        if not self.law:
            return True
        law, t = _short(self.law), _short(title)
        return bool(t) and (law in t or t in law)


def _short(name: str) -> str:
    name = re.sub(r"[《》\s]", "", name)
    name = re.sub(r"[（(][^）)]*[）)]$", "", name)  # "公司法(2023修订)"
    return name.removeprefix("中华人民共和国")


def parse_reference(question: str) -> Reference | None:
    """The article a question names, or None. Only explicit 第X条 references count."""
    m = _REF.search(question)
    if not m:
        return None
    n = cn_to_int(m.group(1))
    if not n:
        return None
    law = ""
    for lm in _LAW.finditer(question[: m.start()]):
        law = lm.group(1) or lm.group(2) or ""
    if not law:
        tail = _LAW.search(question[: m.start()] + "第")
        law = (tail.group(1) or tail.group(2) or "") if tail else ""
    law = re.sub(r"^(?:请问|请|根据|依据|按照|依照|关于|在)", "", law)
    return Reference(article=n, sub=cn_to_int(m.group(2)) if m.group(2) else None,
                     clause=cn_to_int(m.group(3)) if m.group(3) else None,
                     item=cn_to_int(m.group(4)) if m.group(4) else None, law=law)
