"""Statute and standard structure: article (条), paragraph (款) and item (项) labels, numbered clauses.

Chinese laws and regulations are cited by article: 《中华人民共和国劳动合同法》第十九条第一款. A document's
paragraph blocks are walked in order (``annotate``):
- a paragraph that opens with 第X条 (第十条之一) starts an article; every following paragraph up to the
  next article or heading is one more 款 of it, except a paragraph that opens with （一）/(一), which is
  an 项 of the current 款;
- in standards, a heading or paragraph that opens with a numbered clause (4.1, 4.1.2 ...) starts that
  clause; the paragraphs after it belong to it until the next numbered clause or heading.
Each block gets ``article`` (the unit key: "第十九条" or "4.1.2") and ``label`` (its pinpoint:
"第十九条第一款", "第十七条第一款第三项"); an article with one 款 is cited without 款 ("第七条",
"第七条第二项"), as courts cite it. Chunkers keep one article per unit (``ingest.chunking``), and the
query side parses a question that names an article (``parse_reference``) for exact lookup.

Numbers are written the way the document does (Chinese numerals) and compared as integers, so
"第19条" finds 第十九条.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .document import Block, BlockKind
from .numerals import to_zh, zh_numeral

_NUM = "[零〇○一二三四五六七八九十百千两\\d]{1,8}"
_CN_NUM = "[一二三四五六七八九十]{1,4}"

ARTICLE = re.compile(rf"^第\s*({_NUM})\s*条(?:\s*之\s*({_CN_NUM}|\d{{1,2}}))?(?=[\s　:：]|$)")
ITEM = re.compile(rf"^[（(]\s*({_CN_NUM}|\d{{1,2}})\s*[）)]")
# "4.1.2 范围" / "4.1 总则": a standard's numbered clause (at least one dot in a paragraph; headings
# may be "4 总则"). Not "3.5 mm" nor "1.2.3.4.5.6" (a version or an address).
CLAUSE = re.compile(r"^(\d{1,2}(?:\.\d{1,3}){0,4})(?=[\s　]+[^\d\s.])")

_REF = re.compile(rf"第\s*({_NUM})\s*条(?:\s*之\s*({_CN_NUM}|\d{{1,2}}))?(?:\s*第\s*({_NUM})\s*款)?"
                  rf"(?:\s*第\s*({_NUM})\s*项)?")
_LAW = re.compile(r"《([^《》]{2,60})》|([\u4e00-\u9fff]{2,30}?(?:法|条例|办法|规定|规则|细则|决定|通知|解释|准则))"
                  r"(?=\s*第)")


def cn_to_int(s: str) -> int | None:
    """"一百零二" -> 102, "十九" -> 19, "19" -> 19; None when it is not a number (``ingest.numerals``)."""
    return zh_numeral(s.strip())


def int_to_cn(n: int) -> str:
    """102 -> "一百零二", 19 -> "十九": how statutes number their articles (``ingest.numerals``)."""
    return to_zh(n)


def article_label(n: int, sub: int | None = None) -> str:
    return f"第{int_to_cn(n)}条" + (f"之{int_to_cn(sub)}" if sub else "")


def annotate(blocks: list[Block]) -> list[Block]:
    """Set ``article`` and ``label`` on every block (in place; see the module docstring). Idempotent."""
    article: list[Block] = []  # blocks of the article being read
    key, clauses, item_of = "", 0, {}
    clause_key = ""

    def close() -> None:
        if not article:
            return
        single = clauses <= 1
        for b in article:
            kuan, xiang = item_of[id(b)]
            b.label = key + ("" if single else f"第{int_to_cn(kuan)}款") + (f"第{int_to_cn(xiang)}项" if xiang else "")
        article.clear()

    for b in blocks:
        b.article, b.label = "", ""
        text = b.text.lstrip()
        if b.kind == BlockKind.HEADING:
            close()
            key, clause_key = "", ""
            m = CLAUSE.match(text)
            if m:
                clause_key = m.group(1)
                b.article = b.label = clause_key
            continue
        m = ARTICLE.match(text)
        if m and (n := cn_to_int(m.group(1))) is not None:
            close()
            sub = cn_to_int(m.group(2)) if m.group(2) else None
            key, clauses, item_of, clause_key = article_label(n, sub), 1, {}, ""
            article.append(b)
            item_of[id(b)] = (1, 0)
            b.article = key
            continue
        if key:
            im = ITEM.match(text)
            if im and (x := cn_to_int(im.group(1))) is not None:
                item_of[id(b)] = (clauses, x)
            else:
                clauses += 1
                item_of[id(b)] = (clauses, 0)
            article.append(b)
            b.article = key
            continue
        m = CLAUSE.match(text)
        if m and "." in m.group(1):
            clause_key = m.group(1)
        if clause_key:
            b.article = b.label = clause_key
    close()
    return blocks


def span_label(blocks: list[Block], whole: list[Block]) -> str:
    """The pinpoint label of a chunk made of ``blocks`` out of the article ``whole``: the article
    itself when it holds all of it, else its 款 range ("第四条第二款至第四款")."""
    labels = [b.label for b in blocks if b.label]
    if not labels:
        return ""
    key = blocks[0].article
    if not key or len(blocks) == len(whole) or not key.startswith("第"):
        return key or labels[0]
    kuans = [_kuan(lab, key) for lab in labels]
    kuans = [k for k in kuans if k]
    if not kuans:
        return labels[0]
    lo, hi = min(kuans), max(kuans)
    return f"{key}第{int_to_cn(lo)}款" + ("" if lo == hi else f"至第{int_to_cn(hi)}款")


def _kuan(label: str, key: str) -> int | None:
    m = re.match(rf"第({_NUM})款", label[len(key):])
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
        k = _kuan(label, self.key)
        if k is None:  # "第十九条第二项": a one-款 article's item
            return self.clause == 1
        if "至" in rest:
            m = re.search(rf"至第({_NUM})款", rest)
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
