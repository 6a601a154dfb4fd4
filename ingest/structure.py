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

from docqa.document import Block, BlockKind
from docqa.labels import CN_NUM, NUM, article_label, cn_to_int, int_to_cn, kuan

ARTICLE = re.compile(rf"^第\s*({NUM})\s*条(?:\s*之\s*({CN_NUM}|\d{{1,2}}))?(?=[\s　:：]|$)")
ITEM = re.compile(rf"^[（(]\s*({CN_NUM}|\d{{1,2}})\s*[）)]")
# "4.1.2 范围" / "4.1 总则": a standard's numbered clause (at least one dot in a paragraph; headings
# may be "4 总则"). Not "3.5 mm" nor "1.2.3.4.5.6" (a version or an address).
CLAUSE = re.compile(r"^(\d{1,2}(?:\.\d{1,3}){0,4})(?=[\s　]+[^\d\s.])")


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
    kuans = [kuan(lab, key) for lab in labels]
    kuans = [k for k in kuans if k]
    if not kuans:
        return labels[0]
    lo, hi = min(kuans), max(kuans)
    return f"{key}第{int_to_cn(lo)}款" + ("" if lo == hi else f"至第{int_to_cn(hi)}款")


