"""The extractive answerer through ``service.answering.answer_question`` on a real KB built from
examples/docs (see conftest): cited answers, refusals in the question's language, follow-ups."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docqa_server import LAW

from ingest.kb import KnowledgeBase
from ingest.settings import load_settings
from service.answering import answer_question, stream_answer

REFUSAL_ZH = "根据已知信息无法回答该问题"
_CJK = re.compile(r"[\u3400-\u9fff]")


@pytest.fixture(scope="module")
def kb(kb_home: Path) -> KnowledgeBase:
    return KnowledgeBase.open(LAW, load_settings(home=kb_home))


def cited(result) -> dict[int, dict]:
    """The citations by number, after checking the answer's [n] markers name exactly them."""
    by_n = {c["n"]: c for c in result.citations}
    assert {int(n) for n in re.findall(r"\[(\d+)\]", result.answer)} == set(by_n), result.answer
    assert sorted(by_n) == list(range(1, len(by_n) + 1))
    return by_n


def test_statute_question_cites_the_right_article(kb):
    r = answer_question(kb, "劳动合同期限三个月以上不满一年的，试用期不得超过多久？")
    assert not r.refused and "一个月" in r.answer and "[1]" in r.answer
    first = cited(r)[1]
    assert "劳动合同法" in first["source"] and "第十九条" in first["text"]
    assert "".join(stream_answer(r)) == r.answer


def test_notice_question_is_answered_from_the_notice(kb):
    r = answer_question(kb, "2019年国庆节放假几天？")
    assert not r.refused and "7天" in r.answer
    assert any("节假日" in c["title"] and "国庆节" in c["text"] for c in cited(r).values())


def test_english_question_is_answered_from_the_handbook(kb):
    r = answer_question(kb, "How are incidents classified?")
    assert not r.refused and not _CJK.search(r.answer) and "severity" in r.answer.lower()
    assert all(c["source"].endswith("handbook.md") for c in cited(r).values())


@pytest.mark.parametrize("question", ["火星上有多少座火山？", "请问明天北京会下雨吗？"])
def test_off_topic_question_is_refused_in_chinese(kb, question):
    r = answer_question(kb, question)
    assert r.refused and r.answer == REFUSAL_ZH and r.citations == [] and r.reason


@pytest.mark.parametrize("question", ["What is the boiling point of mercury?",
                                      "Who won the football world cup in 1998?"])
def test_english_off_topic_question_is_refused_in_english(kb, question):
    r = answer_question(kb, question)
    assert r.refused and r.citations == []
    assert r.answer != REFUSAL_ZH and not _CJK.search(r.answer) and "answer" in r.answer.lower()


def test_follow_up_is_read_with_the_previous_question(kb):
    first = "劳动合同期限三个月以上不满一年的，试用期不得超过多久？"
    history = [{"role": "user", "content": first}, {"role": "assistant", "content": "不得超过一个月。[1]"}]
    r = answer_question(kb, "一年以上不满三年的呢？", history)
    assert first in r.query and "一年以上不满三年的呢？" in r.query
    assert not r.refused and "二个月" in r.answer
    assert any("第十九条" in c["text"] for c in cited(r).values())
