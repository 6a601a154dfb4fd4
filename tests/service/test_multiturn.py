"""Multi-turn: history kept newest-first within a token budget, extractive joining, and LLM
condensation of follow-ups into the query that is actually searched."""

from __future__ import annotations

import httpx
import pytest
from llm_support import Served, build_kb
from openai_test_server import Scripted, create_openai_app

from docqa.kb import KnowledgeBase
from docqa.settings import load_settings
from docqa.text.tokenize import count_tokens
from service.answering import answer_question
from service.answering.history import clean_condensed, joined_query, truncate_history

HISTORY = [{"role": "user", "content": "劳动合同期限一年以上不满三年的，试用期最长多久？"},
           {"role": "assistant", "content": "试用期不得超过二个月[1]。"}]


def test_token_estimate_counts_cjk_characters_and_english_words():
    assert count_tokens("试用期") == 3
    assert 4 <= count_tokens("How long is probation?") <= 7


def test_history_is_left_truncated_keeping_the_newest_turns():
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"第{i}轮" + "字" * 20} for i in range(10)]
    kept = truncate_history(turns, budget=80)
    assert kept and kept[-1] == turns[-1]
    assert kept == turns[-len(kept):]  # a contiguous newest suffix
    assert sum(count_tokens(t["content"]) + 4 for t in kept) <= 80
    assert kept[0]["role"] == "user"  # never starts with an orphaned assistant turn
    assert len(truncate_history(turns, budget=10_000)) == 10
    assert truncate_history(turns, budget=0) == []
    assert truncate_history([{"role": "system", "content": "x"}, {"role": "user", "content": " "}], 100) == []


def test_extractive_follow_up_joins_the_previous_user_turn():
    assert joined_query("那工资呢？", HISTORY) == f"{HISTORY[0]['content']} 那工资呢？"
    assert joined_query("那工资呢？", []) == "那工资呢？"
    long_q = "劳动者在试用期的工资不得低于本单位相同岗位最低档工资的多少，并且不得低于什么标准？"
    assert joined_query(long_q, HISTORY) == long_q


def test_condensed_output_is_cleaned():
    assert clean_condensed("独立问题：试用期工资有什么规定？\n多余的解释") == "试用期工资有什么规定？"
    assert clean_condensed("\n\"Standalone question: What is the salary?\"") == "What is the salary?"
    assert clean_condensed("  \n ") == ""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = build_kb(tmp_path_factory.mktemp("mt") / "home")
    scripted = Scripted()
    app = create_openai_app({"scripted": scripted})
    with Served(app) as server:
        settings = load_settings(home=home, llm_backend="openai", llm_url=server.url, llm_model="scripted",
                                 llm_retries=0, compliance="off")
        yield KnowledgeBase.open("docs", settings), scripted, app


def test_llm_condenses_the_follow_up_and_the_condensed_query_is_searched(setup):
    kb, scripted, app = setup
    condensed = "劳动者在试用期的工资有什么规定？"
    scripted.queue[:] = [condensed, "不得低于本单位相同岗位最低档工资的百分之八十[1]。"]
    out = answer_question(kb, "那工资呢？", HISTORY)
    assert out.query == condensed
    first, second = app.state.requests[-2:]
    assert "后续问题：那工资呢？" in first["messages"][0]["content"]
    assert HISTORY[0]["content"] in first["messages"][0]["content"]
    assert first["temperature"] == 0.0  # condensation is greedy
    assert "问题是：" + condensed in second["messages"][0]["content"]
    assert "百分之八十" in out.citations[0]["text"]


def test_an_unusable_condensation_falls_back_to_joining(setup):
    kb, scripted, app = setup
    scripted.queue[:] = ["   ", "试用期不得超过二个月[1]。"]
    out = answer_question(kb, "那试用期呢？", [{"role": "user", "content": "劳动合同期限一年以上不满三年的"}])
    assert out.query == "劳动合同期限一年以上不满三年的 那试用期呢？"
    assert not out.fallback


def test_a_first_question_is_not_condensed(setup):
    kb, scripted, app = setup
    n = len(app.state.requests)
    scripted.queue[:] = ["试用期不得超过二个月[1]。"]
    answer_question(kb, HISTORY[0]["content"], [])
    assert len(app.state.requests) == n + 1  # only the answer, no condensation call


def test_openai_messages_carry_the_history(setup):
    kb, scripted, app = setup
    from service.app import create_app

    with Served(create_app(settings=kb.settings)) as svc:
        svc.wait_ready()
        scripted.queue[:] = ["劳动者在试用期的工资有什么规定？", "不低于百分之八十[1]。"]
        msgs = [{"role": "system", "content": "be brief"}, *HISTORY, {"role": "user", "content": "那工资呢？"}]
        r = httpx.post(f"{svc.url}/v1/chat/completions", json={"messages": msgs}, timeout=60)
    assert r.status_code == 200
    condense_prompt = app.state.requests[-2]["messages"][0]["content"]
    assert "助手：试用期不得超过二个月[1]。" in condense_prompt and "be brief" not in condense_prompt
