"""Hard-negative mining over a real (tiny) KB: never the positive, never its section."""

from __future__ import annotations

import os

import pytest

from finetune.embed.data import Pair, pairs_from_kb, pseudo_query
from finetune.embed.mining import MiningConfig, mine_hard_negatives

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SECTIONS = {
    "租赁合同": ["押金", "租金", "维修", "转租"],
    "劳动合同": ["工资", "加班", "试用期", "解除"],
    "借款合同": ["利息", "还款", "担保", "违约"],
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    from test_embed_train import make_tiny_st

    from docqa.kb import KnowledgeBase
    from docqa.settings import Settings
    from ingest.pipeline import ingest_paths

    root = tmp_path_factory.mktemp("mine")
    docs = root / "docs"
    docs.mkdir()
    for title, topics in SECTIONS.items():
        body = [f"# {title}"]
        for t in topics:
            body.append(f"## {t}条款")
            body.append(f"本合同关于{t}的约定如下：双方就{t}事项协商一致，{t}的数额与期限按附件执行。"
                        f"如{t}发生争议，任何一方可以向合同签订地人民法院起诉，{t}条款独立有效。")
        (docs / f"{title}.md").write_text("\n\n".join(body), encoding="utf-8")
    settings = Settings(home=root / "home", embed_model=make_tiny_st(root), chunk_min_tokens=0)
    ingest_paths([docs], "mine", settings, progress=False)
    return KnowledgeBase.open("mine", settings)


def test_pseudo_query_uses_heading_and_keyphrases():
    assert pseudo_query(["租赁合同", "押金条款"], "押金 退还 期限", "正文") == "押金条款 押金 退还 期限"
    q = pseudo_query([], "", "违约金的数额不得超过实际损失的百分之三十，违约金由法院调整。")
    assert "违约金" in q


def test_negatives_never_positive_nor_its_section(kb):
    pairs = pairs_from_kb(kb)
    assert len(pairs) >= 12 and all(p.section for p in pairs)
    mined = mine_hard_negatives(kb, pairs, MiningConfig(rank_lo=0, rank_hi=50, per_query=3, margin=10.0,
                                                        max_pos_sim=1.01))
    units = {u.embed_input(kb.settings.embed): u for d in kb.store.iter_docs() for u in kb.store.units_of_doc(d.doc_id)}
    found = 0
    for p in mined:
        for n in p.neg:
            found += 1
            assert n not in p.pos and not any(n in x or x in n for x in p.pos)
            u = units[n]
            assert (u.doc_id, tuple(u.heading_path)) != p.section
    assert found >= len(mined)  # plenty of candidates outside each section


def test_similarity_guards_drop_near_positives(kb):
    pairs = pairs_from_kb(kb)[:4]
    strict = mine_hard_negatives(kb, pairs, MiningConfig(rank_lo=0, rank_hi=50, per_query=5, margin=-10.0))
    assert all(p.neg == [] for p in strict)  # every candidate scores above -10 x the positive
    dup = mine_hard_negatives(kb, pairs, MiningConfig(rank_lo=0, rank_hi=50, per_query=5, margin=10.0,
                                                      max_pos_sim=-1.0))
    assert all(p.neg == [] for p in dup)
    user_pair = Pair("押金", ["本合同关于押金的约定如下"])  # a file pair: no section, guarded by text overlap
    (mined,) = mine_hard_negatives(kb, [user_pair], MiningConfig(rank_lo=0, rank_hi=50, per_query=50,
                                                                 margin=10.0, max_pos_sim=1.01))
    assert mined.neg and not any("本合同关于押金的约定如下" in n for n in mined.neg)


def test_bad_window_rejected():
    with pytest.raises(ValueError, match="rank window"):
        MiningConfig(rank_lo=50, rank_hi=10)
