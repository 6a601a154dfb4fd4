"""`docqa finetune verifier` (the grounding verifier, docqa/reader/grounding.py): claims made from SQuAD-style
answers, swaps taken from the same passage, the labels by what the read window holds, and the job end to end on
a tiny random encoder."""

from __future__ import annotations

import random

import pytest
from test_reader_job import CASES, squad_file, train_on_cases
from tiny_models import make_tiny_bert

from finetune.reader.data import Question, read_squad
from finetune.reader.grounding import claim_examples, shortened, statement, swap_for

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny(tmp_path):
    texts = [c for case in CASES for c in case] + ["根据材料，资料显示，据介绍：。（）0123456789"]
    return make_tiny_bert(tmp_path / "enc", texts, nsp_head=False)


def test_a_statement_puts_the_answer_where_the_question_word_was():
    assert statement("被告住院治疗了多久？", "二十天", "zh") == "被告住院治疗了多久：二十天。"  # no wh-word it knows
    assert statement("原告修车花了多少钱？", "12000元", "zh") == "原告修车花了12000元钱。"
    assert statement("借款期限", "一年", "zh", "根据材料，") == "根据材料，借款期限：一年。"
    assert statement("Who ruled Normandy?", "Richard", "en") == "Who ruled Normandy? The answer is Richard."


def test_a_swap_comes_from_the_same_passage_and_is_of_the_answers_kind():
    ctx = "原告向被告借款五万元，约定一年内归还，利息按年利率百分之六计算。被告已归还二万元，余款三万元未还。"
    q = Question("q", "g", "被告还了多少钱？", ctx, "span", [(ctx.index("二万元"), "二万元")])
    rng = random.Random(0)
    swaps = {swap_for(q, "二万元", [q], rng) for _ in range(20)}
    assert swaps and swaps <= {"五万元", "三万元"}  # another amount in 元 of this passage, never the answer


def test_a_shortened_sentence_keeps_the_answers_clause_and_drops_the_rest():
    ctx = "被告在超市工作期间摔伤，住院治疗二十天，医疗费共计三千元，由超市垫付。"
    at = ctx.index("三千元")
    for seed in range(10):
        s = shortened(ctx, at, at + 3, random.Random(seed))
        assert s and "三千元" in s and s != ctx and s.endswith("。")
    assert shortened("医疗费共计三千元。", 5, 8, random.Random(0)) is None  # one clause: that is a quote


def test_claim_examples_label_by_what_the_window_holds(tmp_path, tiny):
    from docqa.reader.windows import Tokens

    qs = [q for q in read_squad(squad_file(tmp_path / "c.json")) if q.kind == "span"]
    exs = claim_examples(qs, Tokens(tiny), random.Random(0), sentence=1.0, minus_answer=1.0, other_passage=1.0)
    hows = {(e.how, e.kind) for e in exs}
    assert {("statement", "yes"), ("statement-swap", "no"), ("minus-answer", "none"),
            ("other-passage", "none")} <= hows, hows
    for e in exs:
        held = e.q.context[e.window.text_start:e.window.text_end]
        gold = e.q.answers[0][1]
        assert (gold in held) or e.kind == "none", (e.how, e.kind, held)
        if e.kind == "yes":
            assert gold in e.q.question  # the claim states the gold answer
        if e.how.endswith("swap"):
            assert gold not in e.q.question


def test_finetune_verifier_trains_writes_the_delta_and_its_verdict(tmp_path, tiny, monkeypatch, capsys):
    out, verdict, stdout, err = train_on_cases("verifier", tmp_path, tiny, monkeypatch, capsys)
    assert "passed statement/yes" in verdict["table"]["after"]
    from docqa.reader.grounding import CLAIM_LENGTH
    from docqa.reader.net import read_meta

    meta = read_meta(out)
    assert meta["task"] == "verifier" and meta["max_length"] == CLAIM_LENGTH and meta["languages"] == ["zh"]
    assert meta["command"].startswith("docqa finetune verifier --train")
    assert meta["trained"]["windows_by_kind"]["no"] > 0 and meta["trained"]["windows_by_kind"]["span"] == 0
    assert "[verifier]" in err and "training windows" in stdout
