"""Hybrid retrieval: reciprocal rank fusion, and the two cases it exists for - a query only the
keyword engine can answer (an exact code among near-identical ones) and one only the dense
retriever can answer (an English paraphrase sharing no word with its passage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docqa.kb import KnowledgeBase
from docqa.search import Mode, rrf, search
from docqa.settings import load_settings
from ingest.pipeline import delete_documents, ingest_paths

KB = "hybrid"
ROOMS = {1: "XK-7713-Q", 2: "XK-7731-O", 3: "XK-1377-Q", 4: "KX-7731-Q", 5: "XK-7371-Q"}
CORPUS = {
    "server.md": "# Server room\n\nAccess to the server room requires badge XK-7731-Q and an escort from facilities.\n",
    "resign.md": "# Resignation\n\nAn employee who wants to resign must give thirty days written notice to the "
                 "company before leaving.\n",
    "expense.md": "# Expenses\n\nTravel expenses are reimbursed within thirty days when receipts are attached.\n",
    "canteen.md": "# Canteen\n\nLunch is served from noon until two in the afternoon on weekdays.\n",
    "holiday.md": "# 放假安排\n\n国庆节放假七天，十月八日上班。\n",
    "secret.md": "# 保密制度\n\n员工不得向第三方泄露客户资料，违者按处分条例 qz5520 处理。\n",
    "baoxiao.md": "# 报销\n\n差旅费用凭发票在三十日内报销，逾期不予受理。\n",
    **{f"room{i}.md": f"# Archive room {i}\n\nAccess to archive room {i} requires badge {code} and an escort from "
       "facilities.\n" for i, code in ROOMS.items()},
    **{f"rule{i}.md": f"# 制度{i}\n\n{text}\n" for i, text in enumerate([
        "食堂每日中午十一点半开放，周末不营业。", "会议室须提前一天在系统中预约，使用后恢复原状。",
        "新员工入职须提交身份证复印件和学历证明。", "办公电脑每季度由信息部统一升级补丁。",
        "年度体检安排在每年五月，费用由公司承担。", "加班须事先经部门经理书面批准。",
        "公司班车早上七点从地铁站发车。", "员工离职须办理工作交接并归还门禁卡。"], 1)},
}
pytestmark = pytest.mark.usefixtures("embed_model")


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("hybrid")
    for name, text in CORPUS.items():
        (root / "docs").mkdir(exist_ok=True)
        (root / "docs" / name).write_text(text, encoding="utf-8")
    settings = load_settings(home=root / "home")
    report = ingest_paths([root / "docs"], KB, settings, progress=False)
    assert not report.failures and report.added == len(CORPUS)
    base = KnowledgeBase.open(KB, settings)
    yield base
    base.close()


def files(hits) -> list[str]:
    return [Path(h.source).name for h in hits]


# ---------------------------------------------------------------- fusion


def test_rrf_rewards_agreement_and_respects_weights() -> None:
    fused = dict(rrf([[1, 2, 3], [3, 4]], [1.0, 1.0], k=60))
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert max(fused, key=fused.get) == 3  # found by both beats first place in one
    assert set(fused) == {1, 2, 3, 4}
    only_first = rrf([[1, 2], [2, 1]], [1.0, 0.0])
    assert [i for i, _ in only_first] == [1, 2]  # weight 0 switches a retriever off
    assert rrf([[], []], [1.0, 1.0]) == []


def test_rrf_ties_break_by_id_for_a_stable_order() -> None:
    assert [i for i, _ in rrf([[5], [7]], [1.0, 1.0])] == [5, 7]


# ---------------------------------------------------------------- hybrid retrieval


def test_exact_code_only_keywords_find_comes_back_in_hybrid(kb) -> None:
    k, query = 2, "XK-7731-Q"
    dense = search(kb, query, k, mode=Mode.DENSE)
    keyword = files(search(kb, query, k, mode=Mode.KEYWORD))
    # near-identical codes are near-ties for the dense retriever: a decoy room is in its top 2, within a
    # hair of the exact code (multilingual-e5 may put either first; MiniLM put the decoys first)
    assert any(f.startswith("room") for f in files(dense)), files(dense)
    assert abs(dense[0].score - dense[1].score) < 0.05, [h.score for h in dense]
    assert keyword == ["server.md"]  # the tokens are whole codes: only the exact one matches
    assert files(search(kb, query, k))[0] == "server.md"


def test_paraphrase_only_dense_finds_comes_back_in_hybrid(kb) -> None:
    k, query = 3, "How long in advance should staff tell their boss they are quitting?"
    assert search(kb, query, k, mode=Mode.KEYWORD) == [], "the paraphrase shares no keyword with its passage"
    assert "resign.md" in files(search(kb, query, k, mode=Mode.DENSE))
    assert "resign.md" in files(search(kb, query, k))


def test_chinese_keyword_query(kb) -> None:
    hits = search(kb, "国庆节放假几天", 3)
    assert files(hits)[0] == "holiday.md"
    assert hits[0].lexical_score is not None


def test_hits_carry_text_source_and_scores(kb) -> None:
    hits = search(kb, "travel receipts reimbursed", 5)
    assert len(hits) == 5 and files(hits)[0] == "expense.md"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    top = hits[0].public()
    assert {"doc_id", "source", "title", "text", "score", "unit_id"} <= set(top)
    assert top["title"] == "Expenses" and "receipts" in top["text"]
    assert kb.store.get_units([top["unit_id"]])[top["unit_id"]].text == top["text"]


def test_k_larger_than_the_kb_and_empty_queries(kb) -> None:
    everything = search(kb, "badge", 100, mode=Mode.KEYWORD)
    assert 6 <= len(everything) < 100
    assert search(kb, "的 了 the", 5, mode=Mode.KEYWORD) == []  # only stopwords: nothing to match


def test_deleted_documents_never_come_back(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("server.md", "resign.md"):
        (docs / name).write_text(CORPUS[name], encoding="utf-8")
    ingest_paths([docs], "del", settings, progress=False)
    delete_documents("del", [str(docs / "server.md")], settings)
    base = KnowledgeBase.open("del", settings)
    for mode in Mode:
        assert "server.md" not in files(search(base, "server room badge XK-7731-Q", 10, mode=mode))
    base.close()
