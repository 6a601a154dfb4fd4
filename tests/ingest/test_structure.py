"""Statute structure on the real statutes of ../shared/data/documents_zh/md: labels, one article per
unit, 款 pieces of an over-long article, the same structure with the Markdown marks stripped, and
the exact lookup of a named article through a real KB."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from docqa.document import BlockKind
from docqa.kb import KnowledgeBase
from docqa.kb.manifest import kb_path
from docqa.kb.rules import RULES as CHUNKING_RULES
from docqa.labels import cn_to_int, int_to_cn, parse_reference, pinpoint
from docqa.search import search
from docqa.settings import load_settings
from docqa.text.tokenize import count_tokens
from docqa.units import Level
from ingest.chunking.fixed import chunk_blocks
from ingest.loaders import load_file
from ingest.pipeline import ingest_paths, reindex
from ingest.structure import annotate

pytestmark = pytest.mark.slow  # left out of `make test-fast`

LABOR = "劳动合同法(2012-12-28).md"
COMPANY = "公司法(2023-12-29).md"


@pytest.fixture(scope="module")
def statutes(shared_data: Path) -> Path:
    folder = shared_data / "documents_zh" / "md"
    if not (folder / LABOR).is_file():
        pytest.skip(f"{folder / LABOR} is missing")
    return folder


@pytest.mark.parametrize(("text", "n"), [("一百零二", 102), ("十九", 19), ("十", 10), ("一百一十", 110),
                                         ("二百六十六", 266), ("一千零一", 1001), ("两千", 2000), ("19", 19),
                                         ("〇", 0), ("第", None)])
def test_chinese_numerals(text, n):
    assert cn_to_int(text) == n
    if n:
        assert cn_to_int(int_to_cn(n)) == n


def test_labels_parse_from_questions():
    r = parse_reference("劳动合同法第十九条第二款规定了什么？")
    assert (r.article, r.clause, r.item, r.law) == (19, 2, None, "劳动合同法")
    assert r.key == "第十九条" and r.matches("第十九条第二款") and not r.matches("第十九条第一款")
    assert r.matches("第十九条")  # a unit holding the whole article holds its 款 too
    assert parse_reference("第102条是什么").article == 102
    assert parse_reference("第一百零二条").key == "第一百零二条"
    r = parse_reference("《中华人民共和国公司法》第十条之一")
    assert (r.key, r.law) == ("第十条之一", "中华人民共和国公司法")
    assert not parse_reference("第十条").matches("第十条之一") and not r.matches("第十条")
    assert parse_reference("请问社会保险法第五十八条第一款第三项").law == "社会保险法"
    assert parse_reference("试用期最长多久") is None
    assert r.names("中华人民共和国公司法") and not r.names("中华人民共和国劳动合同法")
    assert pinpoint("中华人民共和国劳动合同法", "第十九条第一款") == "《中华人民共和国劳动合同法》第十九条第一款"
    assert pinpoint("核电厂定期安全审查指南", "4.1.2") == "《核电厂定期安全审查指南》 4.1.2"


def _labels(path: Path) -> dict[str, str]:
    doc = load_file(path)[0]
    annotate(doc.blocks)
    return {b.label: b.text for b in doc.blocks if b.label}


def test_articles_paragraphs_and_items_on_a_real_statute(statutes: Path):
    labels = _labels(statutes / LABOR)
    assert labels["第七条"].startswith("第七条 用人单位自用工之日起")  # one 款: cited without 款
    assert labels["第十九条第一款"].startswith("第十九条 劳动合同期限三个月以上")
    assert labels["第十九条第二款"] == "同一用人单位与同一劳动者只能约定一次试用期。"
    assert labels["第十四条第二款第一项"] == "（一）劳动者在该用人单位连续工作满十年的；"
    assert labels["第十四条第三款"].startswith("用人单位自用工之日起满一年")
    articles = {re.match(r"第[^条]+条", k).group(0) for k in labels}
    assert len(articles) == 98  # every article of the law, 第一条 .. 第九十八条
    assert {cn_to_int(a[1:-1]) for a in articles} == set(range(1, 99))


def test_structure_survives_stripping_the_markdown_marks(statutes: Path, tmp_path: Path):
    """The same statute as plain text and as Markdown without '#': 章/节 are still headings, the
    articles the same."""
    md = (statutes / COMPANY).read_text(encoding="utf-8")
    plain = re.sub(r"(?m)^#+\s*", "", md).replace("<!-- INFO END -->", "")
    for name in ("company.txt", "company.md"):
        (tmp_path / name).write_text(plain, encoding="utf-8")
    marked = load_file(statutes / COMPANY)[0]
    annotate(marked.blocks)
    want_heads = [b.text for b in marked.blocks if b.kind == BlockKind.HEADING and b.text.startswith("第")]
    assert len(want_heads) > 20
    for name in ("company.txt", "company.md"):
        doc = load_file(tmp_path / name)[0]
        annotate(doc.blocks)
        heads = [b for b in doc.blocks if b.kind == BlockKind.HEADING]
        assert [b.text for b in heads] == want_heads, name
        assert {b.label: b.text for b in doc.blocks if b.label} == {b.label: b.text for b in marked.blocks
                                                                    if b.label}, name
        jie = next(b for b in heads if b.text.startswith("第一节"))
        assert len(jie.heading_path) == 2 and jie.heading_path[0].startswith("第三章")  # 节 under 章


def test_an_article_is_one_unit_and_an_overlong_one_is_cut_by_paragraph(statutes: Path):
    doc = load_file(statutes / LABOR)[0]
    segs = chunk_blocks(doc, max_tokens=256, min_tokens=24)
    by_label = {s.label: s for s in segs}
    # short neighbouring articles are never packed into one passage
    assert by_label["第二十九条"].text.startswith("第二十九条") and "第三十条" not in by_label["第二十九条"].text
    assert all(s.text.count("\n第") == 0 for s in segs if s.label.startswith("第"))
    whole = by_label["第十九条"]
    assert whole.text.startswith("第十九条") and whole.text.endswith("该期限为劳动合同期限。")
    # with a small limit an article is cut between its 款, each piece labelled with its 款 range
    small = chunk_blocks(doc, max_tokens=60, min_tokens=10)
    pieces = [s for s in small if s.label.startswith("第十九条")]
    assert len(pieces) >= 2 and all(count_tokens(p.text) <= 60 for p in pieces)
    assert pieces[0].label.startswith("第十九条第一款") and pieces[-1].label.endswith("款")
    assert "".join(p.text.replace("\n", "") for p in pieces) == whole.text.replace("\n", "")


def test_sentence_units_carry_their_paragraph_label_and_search_finds_a_named_article(statutes: Path,
                                                                                     tmp_path: Path, embed_model):
    settings = load_settings(home=tmp_path / "home", device="cpu")
    report = ingest_paths([statutes / LABOR, statutes / COMPANY], "laws", settings, progress=False)
    assert not report.failures
    kb = KnowledgeBase.open("laws", settings)
    try:
        labor = next(d for d in kb.docs() if "劳动合同法" in d["title"])
        units = kb.store.units_of_doc(labor["doc_id"])
        sent = next(u for u in units if u.level == Level.SENTENCE and u.text.startswith("同一用人单位与同一劳动者"))
        assert sent.label == "第十九条第二款"
        for q in ("劳动合同法第十九条规定了什么", "《中华人民共和国劳动合同法》第19条"):
            hits = search(kb, q, 3)
            assert hits[0].exact and hits[0].label == "《中华人民共和国劳动合同法》第十九条", q
            assert hits[0].text.startswith("第十九条")
        # a named law picks its own article among two laws that both have a 第十条
        hits = search(kb, "公司法第十条", 3)
        assert hits[0].label == "《中华人民共和国公司法》第十条" and hits[0].exact
        assert not any(h.exact and "劳动合同法" in h.label for h in hits)
        # no law named: every document's article of that number, then similarity results
        both = [h.label for h in search(kb, "第十条", 5) if h.exact]
        assert sorted(both) == ["《中华人民共和国公司法》第十条", "《中华人民共和国劳动合同法》第十条"]
        # a 款 asked for: the unit holding it; an article that does not exist: similarity only
        assert search(kb, "劳动合同法第十九条第二款", 1)[0].label == "《中华人民共和国劳动合同法》第十九条"
        assert not any(h.exact for h in search(kb, "劳动合同法第九百条", 3))
        # an ordinary question: similarity search, labelled hits
        hits = search(kb, "劳动合同期限一年以上不满三年的，试用期最长是多久？", 3)
        assert not hits[0].exact and hits[0].label == "《中华人民共和国劳动合同法》第十九条"
    finally:
        kb.close()


def test_a_store_written_before_labels_still_opens(statutes: Path, tmp_path: Path, embed_model):
    """A generation written before the label column existed reads labels as "" (no exact lookup) and a
    writer adds the column when it next commits; ingesting into it says that `docqa reindex` re-chunks
    the old documents, and after the reindex their articles are found by number."""
    settings = load_settings(home=tmp_path / "home", device="cpu")
    assert not ingest_paths([statutes / LABOR], "old", settings, progress=False).failures
    kb = KnowledgeBase.open("old", settings)
    db = kb.store.path
    kb.close()
    db.chmod(0o644)
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE units DROP COLUMN label")
    con.commit()
    con.close()
    manifest = kb_path(settings, "old") / "manifest.json"
    assert json.loads(manifest.read_text(encoding="utf-8"))["chunking_rules"] == CHUNKING_RULES
    old = {k: v for k, v in json.loads(manifest.read_text(encoding="utf-8")).items() if k != "chunking_rules"}
    manifest.write_text(json.dumps(old), encoding="utf-8")  # as a release before the rules were recorded wrote it
    kb = KnowledgeBase.open("old", settings)
    try:
        hits = search(kb, "劳动合同法第十九条规定了什么", 3)
        assert hits and not any(h.exact or h.label for h in hits)
    finally:
        kb.close()
    extra = tmp_path / "extra.md"
    extra.write_text("# 补充规定\n\n第一条 本规定自发布之日起施行。\n", encoding="utf-8")
    report = ingest_paths([extra], "old", settings, progress=False)
    assert not report.failures and len(report.notices) == 1 and "docqa reindex --kb old" in report.notices[0]
    kb = KnowledgeBase.open("old", settings)
    try:
        assert search(kb, "补充规定第一条", 1)[0].label == "《补充规定》第一条"
        assert not any(h.exact for h in search(kb, "劳动合同法第十九条规定了什么", 3))  # old chunks: no labels
    finally:
        kb.close()
    reindex("old", settings, {}, progress=False)
    assert json.loads(manifest.read_text(encoding="utf-8"))["chunking_rules"] == CHUNKING_RULES
    kb = KnowledgeBase.open("old", settings)
    try:
        hits = search(kb, "劳动合同法第十九条规定了什么", 3)
        assert hits[0].exact and hits[0].label.endswith("第十九条"), [h.label for h in hits]
    finally:
        kb.close()
    assert ingest_paths([extra], "old", settings, progress=False).notices == []


def test_numbered_clauses_of_a_real_standard_are_units_with_labels(shared_data: Path):
    path = shared_data / "documents_zh" / "docx" / "核电厂定期安全审查指南 第1部分：通用要求（征求意见稿）.docx"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    doc = load_file(path)[0]
    segs = chunk_blocks(doc, max_tokens=256, min_tokens=24)
    labels = [s.label for s in segs if s.label]
    assert {"5.1.1", "5.1.2", "5.2.1", "6.1.2.1"} <= set(labels)
    first = next(s for s in segs if s.label == "5.1.1")
    assert first.text.startswith("5.1.1 一般而言") and "核电厂设计（SF1）" in first.text  # its list stays with it
    assert "5.1.2" not in first.text  # the next clause is a unit of its own
    assert pinpoint(doc.title, first.label) == f"《{doc.title}》 5.1.1"
