"""RAG-SFT builder: serving-identical prompts, cited answers, gold-removed refusals."""

from __future__ import annotations

import os
import re

import pytest

from finetune.llm.rag_sft import QA, REFUSAL, build_rag_sft

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FACTS = {
    "deposit": "The tenant pays a deposit of 800 yuan which is returned within 30 days after the lease ends.",
    "term": "The lease term is twelve months starting on the first day of March and may be renewed once.",
    "repairs": "The landlord pays for structural repairs while the tenant pays for damage caused by misuse.",
    "sublet": "Subletting requires written consent from the landlord and a copy of the sublease agreement.",
    "salary": "The employee receives a monthly salary of 9000 yuan paid on the fifth day of each month.",
    "probation": "The probation period lasts three months during which either party may end the contract.",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    from test_embed_train import make_tiny_st

    from docqa.kb import KnowledgeBase
    from docqa.settings import Settings
    from finetune.records import write_jsonl
    from ingest.pipeline import ingest_paths

    root = tmp_path_factory.mktemp("ragsft")
    write_jsonl(root / "docs.jsonl", [{"id": k, "title": k, "text": v} for k, v in FACTS.items()])
    settings = Settings(home=root / "home", embed_model=make_tiny_st(root), chunk_min_tokens=0)
    ingest_paths([root / "docs.jsonl"], "rag", settings, progress=False)
    return KnowledgeBase.open("rag", settings)


def test_examples_cite_gold_or_refuse_without_it(kb):
    from docqa.templates import Prompts

    qas = [QA("How much is the deposit?", "800 yuan", "1", "deposit"),
           QA("How long is the lease term?", "twelve months", "2", "term"),
           QA("What is the monthly salary?", "9000 yuan", "3", "salary"),
           QA("Who pays for structural repairs?", "The landlord", "4", "repairs"),
           QA("What is the pet policy?", "", "5")]
    report = build_rag_sft(kb, qas, k=3, refusal_share=0.5, seed=3, progress=False)
    assert report.answerable + report.refusals == len(report.examples) == 5 and report.refusals >= 2
    serving = Prompts()
    for ex in report.examples:
        user, target = ex["messages"][0]["content"], ex["messages"][1]["content"]
        passages = re.findall(r'^<passage n="(\d+)" title="(\w+)">\n(.+)\n</passage>$', user, flags=re.M)
        rebuilt = [{"n": int(n), "title": t, "text": txt, "flagged": False} for n, t, txt in passages]
        assert len(rebuilt) == user.count("<passage ")
        assert serving.qa_messages(user.rsplit("Question: ", 1)[1], rebuilt)[0]["content"] == user
        if ex["answerable"]:
            n = int(re.search(r"\[(\d+)\]$", target).group(1))
            assert target.startswith(ex["answer"]) and ex["answer"] in rebuilt[n - 1]["text"]
        else:
            assert target == REFUSAL["en"]
            assert not ex["answer"] or all(ex["answer"] not in p["text"] for p in rebuilt)


@pytest.mark.parametrize(("n_ans", "n_una", "share"), [(70, 30, 0.3), (40, 60, 0.3), (100, 0, 0.2),
                                                     (10, 90, 0.5), (50, 50, 0.0), (20, 5, 1.0)])
def test_refusal_share_caps_and_fills(n_ans, n_una, share):
    import random

    from finetune.llm.rag_sft import plan_refusals

    qas = [QA(f"a{i}", "x", f"a{i}") for i in range(n_ans)] + [QA(f"u{i}", "", f"u{i}") for i in range(n_una)]
    random.Random(1).shuffle(qas)
    kept, refuse = plan_refusals(qas, share, random.Random(0))
    refusals = {i for i, q in enumerate(kept) if not q.answer} | refuse
    assert sum(bool(q.answer) for q in kept) == n_ans  # answerable questions are never dropped
    assert abs(len(refusals) / len(kept) - share) <= 1 / len(kept)
    assert plan_refusals(qas, None, random.Random(0)) == (qas, set())  # evaluation sets keep their mix
    with pytest.raises(ValueError, match="refusal share"):
        plan_refusals(qas, 1.5, random.Random(0))
