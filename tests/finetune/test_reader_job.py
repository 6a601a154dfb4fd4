"""`docqa finetune reader` end to end on a tiny random encoder and SQuAD-style files written here: the split
by case, hard negatives, the held-out before/after table and the verdict, resumption, and bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from cli_helpers import run_main
from tiny_models import make_tiny_bert

from finetune.reader.data import examples, held_groups, parse_spec, part_of, read_squad

pytestmark = pytest.mark.slow

CASES = [
    ("原告与被告于2011年离婚，约定女儿随原告生活，被告每月支付生活费800元。被告未按约定支付。",
     "每月支付多少生活费？", "800元"),
    ("被告驾驶货车与原告的轿车相撞，交警认定被告负全部责任。原告花费修车费12000元。",
     "原告修车花了多少钱？", "12000元"),
    ("原告向被告借款五万元，约定一年内归还，利息按年利率百分之六计算。", "借款的年利率是多少？", "百分之六"),
    ("被告在超市工作期间摔伤，住院治疗二十天，医疗费共计三千元。", "被告住院治疗了多少天？", "二十天"),
]


def squad_file(path: Path, copies: int = 6) -> Path:
    data = []
    for i in range(copies):
        for j, (ctx, q, a) in enumerate(CASES):
            qas = [{"id": f"{i}-{j}-1", "question": q, "answers": [{"text": a, "answer_start": ctx.index(a)}],
                    "is_impossible": "false"},
                   {"id": f"{i}-{j}-2", "question": "被告是否同意调解？",
                    "answers": [{"text": "YES", "answer_start": -1}], "is_impossible": "false"},
                   {"id": f"{i}-{j}-3", "question": "被告的职业是什么？", "answers": [], "is_impossible": "true"}]
            data.append({"caseid": f"case{i}-{j}", "paragraphs": [{"context": f"（{i}）{ctx}", "qas": qas}]})
    path.write_text(json.dumps({"data": data}, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def tiny(tmp_path):
    texts = [c for case in CASES for c in case] + ["被告是否同意调解？被告的职业是什么？（）0123456789"]
    return make_tiny_bert(tmp_path / "enc", texts, nsp_head=False)


def test_a_small_kb_always_keeps_documents_on_both_sides_of_the_split():
    """CI once failed here: the three documents of a test KB (ids from its tmp path) all hashed out of train."""
    names = [f"kb:cases:doc{i}" for i in range(400)]
    off_train = [g for g in names if part_of(g) != "train"][:3]
    on_train = [g for g in names if part_of(g) == "train"][:3]
    for groups in (off_train, on_train, off_train[:2] + on_train[:1], names[:40]):
        held = held_groups(groups)
        assert held and held < set(groups), groups
    assert held_groups(names[:40]) == {g for g in names[:40] if part_of(g) != "train"}  # the hash when it splits
    assert held_groups(["kb:cases:one"]) in (set(), {"kb:cases:one"})  # one document: nothing to hold out


def test_the_split_is_by_case_and_stable(tmp_path):
    f = squad_file(tmp_path / "cases.json", copies=40)
    parts = {p: read_squad(f, p) for p in ("train", "dev", "test")}
    groups = {p: {q.group for q in qs} for p, qs in parts.items()}
    assert groups["train"] and groups["test"]
    assert not groups["train"] & groups["test"] and not groups["train"] & groups["dev"]
    assert sum(len(v) for v in parts.values()) == len(read_squad(f, "all"))
    assert all(part_of(g) == "test" for g in groups["test"])
    kinds = {q.kind for q in read_squad(f)}
    assert kinds == {"span", "yes", "none"}
    with pytest.raises(ValueError, match="must be one of"):
        parse_spec(f"{f}@holdout")


def test_examples_label_spans_and_hard_negatives(tmp_path, tiny):
    from docqa.reader.windows import Tokens

    qs = [q for q in read_squad(squad_file(tmp_path / "c.json"))]
    exs = examples(qs, Tokens(tiny), random.Random(0), minus_answer=1.0, other_passage=1.0)
    spans = [e for e in exs if e.kind == "span"]
    assert spans
    for e in spans:
        w = e.window
        a, b = w.offsets[e.start - w.first][0], w.offsets[e.end - w.first][1]
        assert e.q.context[a:b] == e.q.answers[0][1]
    minus = [e for e in exs if e.how == "minus-answer"]
    other = [e for e in exs if e.how == "other-passage"]
    assert minus and other and all(e.kind == "none" for e in minus + other)


def test_other_window_negatives_come_from_the_answers_own_passage(tiny):
    """A passage of several windows: the ``other-window`` negative is the window of the same passage that best
    covers the question without holding (or overlapping) the answer."""
    from docqa.reader.windows import Tokens
    from finetune.reader.data import Question, answerless_window

    filler = "".join(c for c, _, _ in (CASES[0], CASES[2], CASES[3])) * 3
    ctx = filler + "原告的修车费已经由保险公司支付。" + CASES[1][0]
    answer = "12000元"
    start = ctx.rindex(answer)
    q = Question("q", "g", "原告修车花了多少钱？", ctx, "span", [(start, answer)])
    tok = Tokens(tiny)
    w = answerless_window(tok, tok.question(q.question), q)
    assert w is not None
    assert answer not in ctx[w.text_start:w.text_end] and w.text_end <= ctx.index(answer)
    exs = examples([q], tok, random.Random(0), minus_answer=0.0, other_passage=0.0, other_window=1.0)
    assert [(e.kind, e.how) for e in exs] == [("span", "gold"), ("none", "other-window")]
    short = Question("s", "g", CASES[0][1], CASES[0][0], "span", [(CASES[0][0].index("800元"), "800元")])
    assert answerless_window(tok, tok.question(short.question), short) is None  # one window: nothing else to read


def test_terse_questions_drop_shared_words_but_keep_what_the_answer_turns_on(tiny):
    """A terse copy asks with fewer of the passage's words (as users do) and is still answered by the same span: it
    keeps the question word, its unit (多少日内) and negations; the pair is the gold window and another passage."""
    from docqa.reader.windows import Tokens
    from finetune.reader.data import Question, terse_question

    ctx = "用人单位应当在解除或者终止劳动合同时出具证明，并在十五日内为劳动者办理档案和社会保险关系转移手续。"
    q = "用人单位应当在多少日内为劳动者办理档案和社会保险关系转移手续？"
    seen = set()
    for seed in range(20):
        t = terse_question(q, ctx, random.Random(seed))
        if t is None:
            continue
        seen.add(t)
        assert len(t) < len(q) and "多少日内" in t and t.endswith("？"), t
    assert len(seen) > 3  # a different subset of words each time
    assert all("不得" in (terse_question("试用期工资不得低于多少？", "试用期工资不得低于本单位工资的百分之八十。",
                                         random.Random(s)) or "不得") for s in range(10))
    assert terse_question("隋星梅与谁一同生活？", "隋星梅与母亲一同生活。", random.Random(0)) is None  # 1 shared word

    other = Question("o", "g2", "另一个问题？", "被告每月支付抚养费800元。", "span", [(8, "800元")], "s")
    start = ctx.index("十五日内")
    qq = Question("q", "g1", q, ctx, "span", [(start, "十五日内")], "s")
    exs = examples([qq, other], Tokens(tiny), random.Random(3), minus_answer=0.0, other_passage=0.0,
                   other_window=0.0, terse=1.0)
    terse = [e for e in exs if e.q.qid == "q-terse"]
    assert [(e.kind, e.how) for e in terse] == [("span", "gold"), ("none", "other-passage")]
    w, e = terse[0].window, terse[0]
    assert ctx[w.offsets[e.start - w.first][0]:w.offsets[e.end - w.first][1]] == "十五日内"


def train_on_cases(job: str, tmp_path: Path, tiny: Path, monkeypatch, capsys) -> tuple[Path, dict, str, str]:
    """`docqa finetune JOB` (reader or verifier) for two epochs on the tiny encoder, train part -> test part:
    (the file written, its verdict, stdout, stderr), after checking it ran to the end and cleaned up."""
    f = squad_file(tmp_path / "cases.json", copies=30)
    out = tmp_path / "out" / f"{job}.safetensors"
    code, stdout, err = run_main(monkeypatch, capsys, "finetune", job, "--train", f"{f}@train",
                                 "--heldout", f"{f}@test", "--encoder", str(tiny), "--out", str(out),
                                 "--layers", "1", "--batch-size", "8", "--lr", "3e-3", "--epochs", "2",
                                 "--keep-worse", "--seed", "1")
    assert code in (0, 3), err
    assert out.is_file() and not out.with_name(out.name + ".ckpt").exists()
    verdict = json.loads((out.parent / "finetune_verdict.json").read_text())
    assert verdict["job"] == job and verdict["metric"] == "score"
    return out, verdict, stdout, err


def test_finetune_reader_trains_writes_the_delta_and_its_verdict(tmp_path, tiny, monkeypatch, capsys):
    out, verdict, stdout, err = train_on_cases("reader", tmp_path, tiny, monkeypatch, capsys)
    for side in ("before", "after"):
        t = verdict["table"][side]
        assert {"span_em", "span_f1", "answerability_balanced_accuracy", "score"} <= set(t)
    from docqa.reader.net import read_meta

    meta = read_meta(out)
    assert meta["command"].startswith("docqa finetune reader --train")
    assert meta["trained"]["windows_by_kind"]["none"] > 0 and meta["after"] == verdict["table"]["after"]
    assert "held-out" in err and "training windows" in stdout


def test_training_resumes_from_its_checkpoint(tmp_path, tiny):
    """A run stopped after 3 steps and started again ends with the weights of a run never stopped."""
    import torch

    from docqa.reader.net import build, delta_state
    from docqa.reader.windows import Tokens
    from finetune.reader.train import TrainConfig, train

    exs = examples(read_squad(squad_file(tmp_path / "c.json")), Tokens(tiny), random.Random(0))
    cfg = TrainConfig(trainable=1, batch_size=8, checkpoint_every=1, seed=3)
    assert len(exs) > 8 * 4
    torch.manual_seed(0)
    whole = build(tiny, 1)
    train(whole, exs, cfg, None, log=lambda m: None)
    ckpt, logs = tmp_path / "r.ckpt", []
    torch.manual_seed(0)
    first = build(tiny, 1)
    stats = train(first, exs, cfg, ckpt, log=logs.append, max_steps=3)
    assert stats["steps"] == 3 and ckpt.is_file()
    torch.manual_seed(0)
    second = build(tiny, 1)  # a new process: fresh heads, then the checkpoint
    train(second, exs, cfg, ckpt, log=logs.append)
    assert any("resuming at step 3" in m for m in logs)
    a, b = delta_state(whole), delta_state(second)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_overlapping_train_and_heldout_cases_are_refused(tmp_path, tiny, monkeypatch, capsys):
    f = squad_file(tmp_path / "cases.json")
    code, _, err = run_main(monkeypatch, capsys, "finetune", "reader", "--train", str(f), "--heldout", f"{f}@test",
                            "--encoder", str(tiny), "--out", str(tmp_path / "r.safetensors"))
    assert code == 1 and "in both the training and the held-out sets" in err
    code, _, err = run_main(monkeypatch, capsys, "finetune", "reader", "--train", f"{f}@every",
                            "--encoder", str(tiny), "--out", str(tmp_path / "r.safetensors"))
    assert code == 1 and "must be one of" in err
    code, _, err = run_main(monkeypatch, capsys, "finetune", "reader", "--train", str(tmp_path / "missing.json"),
                            "--encoder", str(tiny), "--out", str(tmp_path / "r.safetensors"))
    assert code == 1 and "missing.json" in err


def test_finetune_reader_from_a_kb_makes_questions_from_its_passages(tmp_path, tiny, monkeypatch, capsys, e5_model):
    from docqa.settings import load_settings
    from ingest.pipeline import ingest_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, (ctx, _, _) in enumerate(CASES * 5):
        (docs / f"case{i}.md").write_text(f"# 案件{i}\n\n第{i + 1}号案件。{ctx}\n", encoding="utf-8")
    home = tmp_path / "home"
    report = ingest_paths([docs], "cases", load_settings(home=home, device="cpu", keyphrases=False), progress=False)
    assert not report.failures
    monkeypatch.setenv("DOCQA_HOME", str(home))
    out = tmp_path / "out" / "reader.safetensors"
    code, stdout, err = run_main(monkeypatch, capsys, "finetune", "reader", "--kb", "cases", "--encoder", str(tiny),
                                 "--out", str(out), "--layers", "1", "--batch-size", "4", "--keep-worse")
    assert code in (0, 3), err
    assert "questions made from KB cases" in err
    from docqa.reader.net import read_meta

    meta = read_meta(out)
    assert meta["trained"]["windows"] > 0
    verdict = json.loads((out.parent / "finetune_verdict.json").read_text())
    # documents held out of training give the before/after table; a KB whose questions all come from one
    # document has none to hold out, and the verdict says so
    assert meta["before"] or "no held-out numbers" in err, (meta, err)
    assert bool(meta["before"]) == (verdict["before"] is not None)


def test_statute_questions_ask_about_each_articles_facts(tmp_path, monkeypatch, capsys):
    law = tmp_path / "示例法(2020-01-01).md"
    law.write_text("# 示例法\n\n## 第一章 总则\n\n第一条 为了规范示例，制定本法。\n\n"
                   "第二条 申请人应当自收到通知之日起三十日内提交材料。\n"
                   "逾期不提交的，由主管部门处五千元以下的罚款。\n\n"
                   "**第三条** 本法自公布之日起施行。\n", encoding="utf-8")
    out = tmp_path / "q.json"
    code, stdout, err = run_main(monkeypatch, capsys, "finetune", "statute-questions", str(tmp_path), "--out", str(out))
    assert code == 0, err
    qs = read_squad(out)
    assert {q.answers[0][1] for q in qs} == {"三十日内", "五千元"} and all(q.group.endswith("示例法(2020-01-01)")
                                                                   for q in qs)
    for q in qs:
        s, t = q.answers[0]
        assert q.context[s:s + len(t)] == t and t not in q.question and q.context.startswith("第二条")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.md").write_text("第一条 本法自公布之日起施行。\n", encoding="utf-8")
    code, _, err = run_main(monkeypatch, capsys, "finetune", "statute-questions", str(empty), "--out", str(out))
    assert code == 1 and "no article sentence" in err
