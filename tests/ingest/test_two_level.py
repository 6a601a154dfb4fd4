"""Two-level index: units at three levels with parents, level-2 mapping and containment dedup at
search time, the ``embed`` setting recorded in the manifest, incremental update/delete and reindex."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from docqa.kb import KnowledgeBase
from docqa.search import search
from docqa.settings import load_settings
from docqa.units import Level
from ingest.pipeline import delete_documents, ingest_paths, reindex

pytestmark = pytest.mark.usefixtures("embed_model")

DOC = """# 员工管理办法

## 第一章 试用期

第一条 新员工的试用期为三个月。试用期内员工提前三日通知公司，可以解除劳动合同。试用期工资不低于转正工资的百分之八十。

第二条 试用期满考核合格的员工，由人力资源部办理转正手续。

## 第二章 报销

第三条 差旅费报销须在出差结束后十五日内提交。超过期限的报销申请，财务部不予受理。住宿标准为每晚不超过五百元。
"""


def build(tmp_path: Path, name: str, text: str = DOC, **overrides):
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    path = docs / "rules.md"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(home=tmp_path / "home", device="cpu", **overrides)
    report = ingest_paths([path], name, settings, progress=False)
    assert not report.failures
    return KnowledgeBase.open(name, settings), settings, path


def all_units(kb: KnowledgeBase):
    doc_id = kb.store.list_docs()[0]["doc_id"]
    return kb.store.units_of_doc(doc_id)


def test_three_levels_with_parents_and_keyinfo(tmp_path: Path) -> None:
    kb, _, _ = build(tmp_path, "levels")
    units = all_units(kb)
    by_id = {u.unit_id: u for u in units}
    levels = {lv: [u for u in units if u.level == lv] for lv in Level}
    assert len(levels[Level.ARTICLE]) == 1 and levels[Level.SEGMENT] and levels[Level.SENTENCE]
    article = levels[Level.ARTICLE][0]
    assert article.parent_id is None and "员工管理办法" in article.keyinfo
    for seg in levels[Level.SEGMENT]:
        assert seg.parent_id == article.unit_id
        assert "|" in seg.keyinfo  # heading path | keyphrases
        phrases = seg.keyinfo.split("|", 1)[1]
        assert all(p.strip() in article.keyinfo for p in phrases.split("、"))  # article = union of segments'
    for sent in levels[Level.SENTENCE]:
        parent = by_id[sent.parent_id]
        assert parent.level == Level.SEGMENT and sent.text in parent.text


def test_sentence_hit_returns_its_segment_once(tmp_path: Path) -> None:
    kb, _, _ = build(tmp_path, "dedup")
    hits = search(kb, "试用期内提前几天通知可以解除劳动合同", k=5)
    assert hits
    ids = [h.unit_id for h in hits]
    assert len(ids) == len(set(ids))  # no passage twice
    for i, a in enumerate(hits):  # no returned text inside another returned text
        assert all(a.text not in b.text for j, b in enumerate(hits) if j != i)
    units = {u.unit_id: u for u in all_units(kb)}
    assert all(units[h.unit_id].level == Level.SEGMENT for h in hits)  # level 2 is always a segment
    top = hits[0]
    assert "提前三日" in top.text
    if top.level == "sentence":
        assert top.matched_text in top.text and top.matched_unit_id != top.unit_id
        assert units[top.matched_unit_id].parent_id == top.unit_id


def test_search_json_shows_level_keyinfo_and_text(tmp_path: Path, monkeypatch) -> None:
    from service.cli import cli

    _, settings, _ = build(tmp_path, "jsoncli")
    monkeypatch.setenv("DOCQA_HOME", str(settings.home))
    res = CliRunner().invoke(cli, ["search", "差旅费报销期限", "--kb", "jsoncli", "--json"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)
    assert hits and {"level", "keyinfo", "text", "matched_text", "unit_id"} <= set(hits[0])
    assert any("十五日" in h["text"] for h in hits)


def test_embed_setting_is_recorded_and_reindex_changes_chunker(tmp_path: Path) -> None:
    kb, settings, path = build(tmp_path, "reidx", embed="keyinfo")
    assert kb.manifest["build"]["embed"] == "keyinfo" and kb.manifest["build"]["chunker"] == "fixed"
    reopened = KnowledgeBase.open("reidx", load_settings(home=settings.home))  # defaults differ: KB wins
    assert reopened.settings.embed.value == "keyinfo"
    before = len(all_units(kb))
    report = reindex("reidx", settings, {"chunker": "embedding", "embed": "both"}, progress=False)
    kb2 = KnowledgeBase.open("reidx", settings)
    assert kb2.manifest["build"]["chunker"] == "embedding" and kb2.manifest["build"]["embed"] == "both"
    assert report.units == len(all_units(kb2)) and before > 0
    assert search(kb2, "住宿标准每晚多少钱", k=3)[0].text.count("五百元") == 1


def test_update_and_delete_cover_every_level(tmp_path: Path) -> None:
    kb, settings, path = build(tmp_path, "upd")
    new = DOC.replace("五百元", "六百元")
    path.write_text(new, encoding="utf-8")
    rep = ingest_paths([path], "upd", settings, progress=False)
    assert rep.updated == 1
    kb = KnowledgeBase.open("upd", settings)
    units = all_units(kb)
    assert not any("五百元" in u.text for u in units)
    assert {u.level for u in units if "六百元" in u.text} == {Level.ARTICLE, Level.SEGMENT, Level.SENTENCE}
    deleted, missing = delete_documents("upd", [str(path)], settings)
    assert deleted and not missing
    kb = KnowledgeBase.open("upd", settings)
    assert kb.store.counts() == {"docs": 0, "units": 0} and len(kb.vectors) == 0
