"""The reader's parts on a tiny random encoder: windows and their offsets, the network and its delta file,
the int8 ONNX export run by the runtime, span decoding, and the build's checks of the shipped file."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from docqa.reader.decode import best_span, read_all, sentence_around
from docqa.reader.windows import Tokens, batch, room, windows
from tests.tiny_models import make_tiny_bert

ZH = ("第十九条 劳动合同期限三个月以上不满一年的，试用期不得超过一个月；"
      "劳动合同期限一年以上不满三年的，试用期不得超过二个月。")
MIXED = "SEV1 事故须在 15 分钟内确认。Backups are kept for thirty days. 備份保留三十天，勞動者可查詢。"
TEXTS = [ZH, MIXED, "试用期最长多久？", "How long are backups kept?"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-reader-encoder"), TEXTS, nsp_head=False)


@pytest.fixture(scope="module")
def tokens(tiny):
    return Tokens(tiny)


def test_windows_map_every_token_back_to_the_passage(tokens):
    for text in (ZH, MIXED):
        q = tokens.question("试用期最长多久？")
        ids, offs = tokens.passage(text)
        wins = windows(q, ids, offs, max_length=40)
        assert len(wins) > 1, "a passage longer than the room must be cut"
        covered = set()
        for w in wins:
            assert len(w.ids) <= 40
            assert w.ids[w.first - 1] == 2 and w.ids[-1] == 2  # </s> before and after the passage
            for a, b in w.offsets:
                assert 0 <= a <= b <= len(text)
                covered.update(range(a, b))
        assert covered >= {i for i, c in enumerate(text) if not c.isspace()}, "a character no window reads"
        assert wins[-1].offsets[-1][1] == len(text.rstrip())


def test_token_span_finds_the_characters_of_an_answer(tokens):
    q = tokens.question("试用期最长多久？")
    ids, offs = tokens.passage(ZH)
    start = ZH.index("二个月")
    hits = [w for w in windows(q, ids, offs, max_length=48) if w.token_span(start, start + 3)]
    assert hits, "some window must hold the answer"
    w = hits[0]
    a, b = w.token_span(start, start + 3)
    assert ZH[w.offsets[a - w.first][0]:w.offsets[b - w.first][1]] == "二个月"
    assert w.token_span(0, len(ZH)) is None or len(windows(q, ids, offs, max_length=48)) == 1


def test_best_span_respects_order_and_length(tokens):
    q = tokens.question("q")
    ids, offs = tokens.passage(ZH)
    w = windows(q, ids, offs)[0]
    n = len(w.ids)
    start, end = np.full(n, -5.0), np.full(n, -5.0)
    start[w.first + 6], end[w.first + 3] = 9.0, 9.0  # the best end lies before the best start
    end[w.first + 8] = 4.0
    i, j, p = best_span(start, end, w)
    assert (i, j) == (w.first + 6, w.first + 8) and 0 < p <= 1
    start[0], end[0] = 50.0, 50.0  # the question's tokens are never an answer
    i, j, _ = best_span(start, end, w)
    assert w.first <= i <= j <= w.last


def test_sentence_around_an_answer():
    s = ZH.index("二个月")
    a, b = sentence_around(ZH, s, s + 3)
    assert ZH[a:b] == "劳动合同期限一年以上不满三年的，试用期不得超过二个月。"
    en = "Backups run nightly. They are kept for thirty days. Restores take an hour."
    s = en.index("thirty")
    assert en[slice(*sentence_around(en, s, s + 6))].strip() == "They are kept for thirty days."


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """A reader on the tiny encoder, trained a few steps, saved as a delta file."""
    import torch

    from docqa.reader.net import build, save_delta
    from finetune.reader.data import Question, examples
    from finetune.reader.train import TrainConfig, train

    torch.manual_seed(0)
    net = build(tiny, trainable=1)
    tok = Tokens(tiny)
    qs = [Question("1", "g1", "试用期最长多久？", ZH, "span", [(ZH.index("二个月"), "二个月")], "t"),
          Question("2", "g2", "How long are backups kept?", MIXED, "span",
                   [(MIXED.index("thirty days"), "thirty days")], "t"),
          Question("3", "g3", "备份保留多久？", MIXED, "none", source="t")]
    exs = examples(qs, tok, random.Random(0), minus_answer=1.0, other_passage=1.0)
    assert {e.kind for e in exs} == {"span", "none"}
    assert any(e.how == "minus-answer" for e in exs)
    out = tmp_path_factory.mktemp("reader") / "reader.safetensors"
    train(net, exs * 4, TrainConfig(trainable=1, batch_size=4, epochs=1.0, checkpoint_every=2),
          out.with_suffix(".ckpt"), log=lambda m: None)
    save_delta(net, out, {"max_length": 192})
    return net, out


def test_the_delta_holds_only_what_training_changed(tiny, trained):
    from safetensors import safe_open

    from docqa.reader.net import load, read_meta

    net, path = trained
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith(("bert.encoder.layer.1.", "span.", "kind.")) for k in keys)
    assert not any("embeddings" in k or "layer.0." in k for k in keys)
    assert read_meta(path)["trainable"] == 1
    again = load(tiny, path)
    import torch

    ids = torch.tensor([[0, 5, 6, 2, 2, 7, 8, 9, 2]])
    with torch.inference_mode():
        a = net.eval()(ids, torch.ones_like(ids))
        b = again(ids, torch.ones_like(ids))
    assert all(torch.allclose(x, y, atol=2e-2) for x, y in zip(a, b, strict=True))  # fp16 on disk


def test_a_truncated_delta_is_refused(tiny, trained, tmp_path):
    from docqa.reader.net import load

    _, path = trained
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own error for a cut file
        load(tiny, bad)


def test_int8_onnx_reads_like_torch(tiny, trained, tmp_path):
    import torch

    from docqa.models.onnx_backend import _quantize
    from docqa.reader.net import export_onnx
    from docqa.reader.runtime import Reader

    net, _ = trained
    export_onnx(net, tmp_path / "reader.onnx")
    _quantize(tmp_path / "reader.onnx", tmp_path / "reader_int8.onnx")
    reader = Reader(tmp_path / "reader_int8.onnx", tiny, {})
    _, per = reader.windows("试用期最长多久？", [ZH, MIXED])
    wins = [w for ws in per for w in ws]
    ids, mask = batch(wins)
    with torch.inference_mode():
        ref = [t.numpy() for t in net.eval()(torch.from_numpy(ids), torch.from_numpy(mask))]
    got = reader.logits(wins)
    assert np.abs(ref[2] - got[2]).max() < 0.5
    readings = reader.read(wins)
    assert len(readings) == len(wins)
    assert readings == sorted(readings, key=lambda r: (-r.p_answer, r.window))
    for r in readings:
        assert abs(sum(r.p_kinds.values()) - 1) < 1e-6
        if r.kind == "span":
            text = [ZH, MIXED][r.passage]
            assert 0 <= r.start < r.end <= len(text)


def test_read_all_picks_the_window_most_likely_to_answer(tokens):
    q = tokens.question("q")
    ids, offs = tokens.passage(ZH)
    wins = windows(q, ids, offs, max_length=40)[:2]
    n = max(len(w.ids) for w in wins)
    start = np.zeros((2, n))
    end = np.zeros((2, n))
    kind = np.array([[3.0, 0.0, 0.0, 0.0], [-3.0, 3.0, 0.0, 0.0]])
    best = read_all(start, end, kind, wins)[0]
    assert best.window == 1 and best.kind == "span" and best.p_answer > 0.9


def test_build_names_a_missing_or_damaged_reader_file(tmp_path, trained):
    from docqa.reader.build import ReaderBuildError, sha256, verify_shipped

    _, path = trained
    with pytest.raises(ReaderBuildError, match="is missing"):
        verify_shipped(tmp_path / "nope.safetensors", tmp_path / "nope.sha256")
    good = tmp_path / "reader.safetensors"
    good.write_bytes(path.read_bytes())
    sums = tmp_path / "reader.sha256"
    sums.write_text(sha256(good) + "  reader.safetensors\n")
    assert verify_shipped(good, sums) == sha256(good)
    good.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ReaderBuildError, match="does not match its checksum") as e:
        verify_shipped(good, sums)
    assert "READER_MODEL.md" in str(e.value)


def test_a_reader_that_fails_its_probes_is_not_published(tiny, trained, tmp_path):
    """The tiny random reader cannot answer the probe questions: the build says so and leaves nothing."""
    from docqa.reader.build import ReaderBuildError, build, sha256

    _, path = trained
    sums = tmp_path / "reader.sha256"
    sums.write_text(sha256(path))
    out = tmp_path / "built"
    with pytest.raises(ReaderBuildError, match="probe"):
        build(tiny, out, delta=path, checksum=sums, log=lambda m: None)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".reader-")] == []


def test_the_runtime_explains_a_missing_build(tmp_path):
    from docqa.reader.runtime import ReaderUnavailable, _load

    with pytest.raises(ReaderUnavailable, match="docqa models build"):
        _load(str(tmp_path))
    (tmp_path / "docqa_reader.json").write_text(json.dumps({"onnx": "reader_int8.onnx", "encoder": str(tmp_path)}))
    with pytest.raises(ReaderUnavailable, match="could not be loaded"):
        _load(str(tmp_path))


def test_room_leaves_space_for_the_question(tokens):
    q = tokens.question("试用期最长多久？" * 20)
    assert len(q) <= 48 and room(q) == 192 - len(q) - 4


def test_models_reader_refuses_a_damaged_file_in_one_line(tmp_path, trained, e5_model):
    import os
    import subprocess
    import sys

    from docqa.reader.build import sha256

    _, path = trained
    bad = tmp_path / "mine.safetensors"
    bad.write_bytes(path.read_bytes())
    (tmp_path / "mine.sha256").write_text(sha256(bad) + "\n")
    bad.write_bytes(path.read_bytes()[:-4096])  # cut after its checksum was taken
    r = subprocess.run([sys.executable, "-m", "service.cli", "models", "reader", str(bad)], capture_output=True,
                       text=True, env={**os.environ, "DOCQA_DEBUG": ""})
    assert r.returncode == 2, r
    assert r.stderr.strip().count("\n") == 0 and "does not match its checksum" in r.stderr and str(bad) in r.stderr
    assert not (tmp_path / "mine-onnx").exists()


def test_a_span_does_not_run_past_the_end_of_its_sentence(tokens):
    text = "试用期不得超过二个月。\n三年以上的不得超过六个月。"
    q = tokens.question("q")
    ids, offs = tokens.passage(text)
    w = windows(q, ids, offs)[0]
    n = len(w.ids)
    start, end = np.full(n, -5.0), np.full(n, -5.0)
    first = next(k for k, (a, b) in enumerate(w.offsets) if a <= text.index("二") < b)
    last = next(k for k, (a, b) in enumerate(w.offsets) if a <= text.index("六") < b)
    start[w.first + first], end[w.first + last] = 9.0, 9.0
    i, j, _ = best_span(start, end, w)  # without the text: the two sentences as one span
    assert text[w.offsets[i - w.first][0]:w.offsets[j - w.first][1]].count("。") >= 1
    i, j, _ = best_span(start, end, w, text=text)
    got = text[w.offsets[i - w.first][0]:w.offsets[j - w.first][1]]
    assert "\n" not in got and got.count("。") <= 1 and not got.startswith("。"), got


def test_a_window_ranker_decides_the_window_and_its_probability_is_the_refusal_score(tokens, tmp_path, caplog):
    import math

    from docqa.reader.rank import WindowRanker, load_ranker
    from docqa.text.coverage import coverages
    from service.answering.reading import rank

    texts = ["劳动者在试用期内提前三日通知用人单位，可以解除劳动合同。", "用人单位应当按月足额支付工资。"]
    q = "试用期内提前几日通知用人单位？"
    qi = tokens.question(q)
    wins = [windows(qi, *tokens.passage(t), i, max_length=64)[0] for i, t in enumerate(texts)]
    n = max(len(w.ids) for w in wins)
    kind = np.array([[0.0, 0.5, 0.0, 0.0], [-3.0, 3.0, 0.0, 0.0]])  # the reader prefers the second window
    readings = read_all(np.zeros((2, n)), np.zeros((2, n)), kind, wins, texts)
    assert readings[0].window == 1 and rank(None, q, readings, wins, texts).window == 1
    by_coverage = WindowRanker(np.array([0.0, 0.0, 10.0, 0.0, 0.0, 0.0]), -5.0, "abc")
    cov = coverages(q, texts)
    assert cov[0] > cov[1]
    best = rank(by_coverage, q, readings, wins, texts)
    assert best.window == 0 and best.p_answer == pytest.approx(1 / (1 + math.exp(-(10 * cov[0] - 5))))
    assert best.p_reader == pytest.approx(1 - best.p_kinds["none"])  # the reader's own figure is kept
    path = by_coverage.save(tmp_path / "ranker.json")
    assert load_ranker("abc", path).weights.tolist() == [0.0, 0.0, 10.0, 0.0, 0.0, 0.0]
    by_retrieval = WindowRanker(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 10.0]), -5.0, "abc")
    assert rank(by_retrieval, q, readings, wins, texts, [0.4, 1.0]).window == 1  # both retrievers agree on 2nd
    assert rank(by_retrieval, q, readings, wins, texts, [1.0, 0.4]).p_answer == pytest.approx(1 / (1 + math.exp(-5)))
    path.write_text(path.read_text().replace('"retrieval_agreement"', '"other"'), encoding="utf-8")
    assert load_ranker("abc", path) is None and "cannot be used" in caplog.text  # fitted on other features
    assert load_ranker("another reader", path) is None  # fitted with another reader file: not used
    assert load_ranker(None, path) is None
    path.write_text("{not json", encoding="utf-8")
    assert load_ranker("abc", path) is None and "cannot be used" in caplog.text  # said, never a crash
    assert load_ranker("abc", tmp_path / "missing.json") is None


def test_retrieval_agreement_reads_ranks_not_scores():
    from docqa.reader.rank import retrieval_agreement
    from docqa.search import Hit

    def hit(dense, lexical, score=0.0, exact=False):
        return Hit(1, "d", "s", "t", "x", score, dense_rank=dense, lexical_rank=lexical, exact=exact)

    assert retrieval_agreement(hit(1, 1)) == pytest.approx(1.0)
    assert retrieval_agreement(hit(1, None)) == pytest.approx(0.5)
    assert retrieval_agreement(hit(None, None, exact=True)) == 1.0  # found by the article the question names
    assert 0 < retrieval_agreement(hit(5, 20)) < retrieval_agreement(hit(2, 3)) < 1
    assert retrieval_agreement(hit(2, 3, score=0.9)) == retrieval_agreement(hit(2, 3, score=0.01))  # fusion-agnostic
    assert retrieval_agreement(hit(None, None)) == 0.0


def test_the_shipped_ranker_belongs_to_the_shipped_reader():
    """A reader file shipped without refitting its ranker would silently rank by P(answer) alone."""
    from docqa.reader.files import SHIPPED, sha256
    from docqa.reader.rank import load_ranker

    assert load_ranker(sha256(SHIPPED)) is not None, "refit: python bench/reader_rank.py --laws ... --fit"


def test_the_verifier_file_is_checked_and_probed_like_the_readers(tiny, trained, tmp_path):
    """The grounding verifier ships on the same network: a missing or damaged file names its card, and an export
    that misjudges the probe claims (the tiny random network) is not published."""
    from docqa.reader.build import VERIFIER, ReaderBuildError, build, sha256, verify_shipped

    _, path = trained
    with pytest.raises(ReaderBuildError, match="verifier file .* is missing") as e:
        verify_shipped(tmp_path / "nope.safetensors", tmp_path / "nope.sha256", VERIFIER)
    assert "VERIFIER_MODEL.md" in str(e.value)
    sums = tmp_path / "verifier.sha256"
    sums.write_text(sha256(path))
    out = tmp_path / "built"
    with pytest.raises(ReaderBuildError, match="probe claim") as e:
        build(tiny, out, delta=path, checksum=sums, log=lambda m: None, kind=VERIFIER)
    assert "VERIFIER_MODEL.md" in str(e.value) and not out.exists()


def test_a_claim_agrees_with_its_slot_by_text_or_by_value():
    from docqa.reader.grounding import slot_agrees

    assert slot_agrees("二个月", "试用期最长二个月。") and slot_agrees("2个月", "试用期最长两个月")
    assert slot_agrees("Normandy", "They settled in normandy.")
    assert not slot_agrees("六个月", "试用期最长二个月。") and not slot_agrees("", "试用期")


def test_the_verifier_judges_a_claim_by_its_kind_head_and_its_slot(tokens):
    """P(stated) is the kind head's P(yes) when the slot the span head finds is what the claim says; a confident
    slot that says something else turns it into P(states otherwise)."""
    from docqa.reader.grounding import CLAIM_LENGTH, claim_windows, judge

    claim_ok = "劳动合同期限一年以上不满三年的，试用期不得超过二个月。"
    claim_bad = claim_ok.replace("二个月", "一个月")
    w = claim_windows(tokens, claim_ok, [ZH])[0]
    assert len(w.ids) <= CLAIM_LENGTH
    slot = w.token_span(ZH.rindex("二个月"), ZH.rindex("二个月") + 3)
    start, end = np.full(len(w.ids), -9.0), np.full(len(w.ids), -9.0)
    start[slot[0]], end[slot[1]] = 9.0, 9.0
    kind = np.array([-3.0, -3.0, 3.0, -3.0])  # none, span, yes, no: the kind head says yes
    yes, other, said = judge(claim_ok, ZH, w, start, end, kind)
    assert said == "二个月" and yes > 0.9 and other < 0.1
    yes, other, said = judge(claim_bad, ZH, w, start, end, kind)
    assert said == "二个月" and yes < 0.1 and other > 0.9
