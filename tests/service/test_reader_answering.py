"""The shipped reader in the answer path (#27), on the law KB of examples/docs (see conftest): short answers
with their sentence, label and [n]; ``answer_span`` in both APIs; refusal when the passages hold no answer;
named articles still quoted whole; a reader that cannot load (answers go on, marked; /readyz degraded)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from docqa_server import LAW, DocqaServer

from docqa.kb import KnowledgeBase
from docqa.settings import load_settings
from service.answering import answer_question

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reader_built():
    from docqa.reader.runtime import ReaderUnavailable, load_reader

    try:
        return load_reader()
    except ReaderUnavailable as e:
        pytest.skip(f"the shipped reader is not usable here: {e}")


@pytest.fixture(scope="module")
def kb(kb_home: Path, reader_built) -> KnowledgeBase:
    return KnowledgeBase.open(LAW, load_settings(home=kb_home, reader=True))  # opt-in (docqa/settings/parts.py)


@pytest.mark.parametrize(("question", "short", "article"), [
    ("员工试用期内想辞职，需要提前几天通知公司？", "三日", "第三十七条"),
    # parallel clauses: the reader alone takes the 一个月 one; the clause stating the question's numbers wins
    ("劳动合同期限一年以上不满三年的，试用期最长多久？", "二个月", "第十九条"),
])
def test_the_reader_answers_short_then_quotes_its_sentence(kb, question, short, article):
    r = answer_question(kb, question)
    assert not r.refused and not r.fallback, (r.answer, r.reason)
    assert r.basis == "reader" and r.answer_span is not None
    span = r.answer_span
    assert short in span["text"] and span["kind"] == "span" and span["n"] == 1
    cit = r.citations[0]
    assert cit["text"][span["start"]:span["end"]] == span["text"]  # the span is exactly the passage's
    assert span["sentence"] in cit["text"] and span["text"] in span["sentence"]
    assert article in cit["label"]
    assert r.answer.startswith(span["text"]) or r.answer.startswith(span["sentence"])
    assert r.answer.endswith("[1]") and re.findall(r"\[(\d+)\]", r.answer) == ["1"]
    assert r.evidence_score == pytest.approx(span["probability"], abs=1e-3) and r.evidence_score >= 0.5


def test_the_reader_reads_more_windows_only_when_the_first_do_not_answer(reader_built):
    from service.answering.reading import read_texts

    q = "员工试用期内想辞职，需要提前几天通知公司？"
    passages = ["猴面包树的果实长约15至20厘米，味道很好。", "亚硫酸盐在葡萄酒中用作防腐剂，防止变质和氧化。",
                "第三十七条 劳动者提前三十日以书面形式通知用人单位，可以解除劳动合同。劳动者在试用期内提前三日"
                "通知用人单位，可以解除劳动合同。"]
    # the reader's own P(answer) (the window ranker would also weigh the third passage's retrieval rank)
    whole, texts = read_texts(reader_built, q, passages, 3, ranked=False)  # one batch of all three
    assert whole.passage == 2 and "三日" in texts[2][whole.start:whole.end] and whole.p_answer >= 0.5
    # two steps: the first two windows hold no answer (P below 0.5), so the third is read and wins as before
    two, _ = read_texts(reader_built, q, passages, 3, ranked=False, first=2, enough=0.5)
    # (its probability differs a little: int8 dynamic quantisation scales activations over the whole batch)
    assert (two.passage, two.start, two.end) == (whole.passage, whole.start, whole.end) and two.p_answer >= 0.5
    # a first step that is taken as enough whatever it says: the third passage is never read
    first, _ = read_texts(reader_built, q, passages, 3, ranked=False, first=2, enough=0.0)
    assert first.passage in (0, 1) and first.p_answer < 0.5


def test_a_question_the_documents_do_not_answer_is_refused_by_the_reader(kb):
    r = answer_question(kb, "公司年会抽奖的一等奖奖品是什么？")
    assert r.refused and r.basis == "reader" and "reader" in r.reason
    assert r.evidence_score < kb.settings.reader_threshold and r.answer_span is None


def test_a_named_article_is_still_quoted_whole_and_passes_the_guard(kb):
    r = answer_question(kb, "劳动合同法第二十五条是怎么规定的？")
    assert not r.refused and not r.fallback and r.basis == "article", (r.answer, r.reason)
    assert r.citations[0]["label"].endswith("第二十五条") and r.answer_span is None


def test_without_a_loadable_reader_answers_quote_sentences_and_say_so(kb, tmp_path):
    view = kb.with_settings({"reader": True, "reader_model": str(tmp_path / "no-reader")})
    r = answer_question(view, "劳动合同期限一年以上不满三年的，试用期最长多久？")
    assert not r.refused and "二个月" in r.answer and r.basis == "evidence" and r.answer_span is None
    assert any("answered without the reader" in w and "docqa models build" in w for w in r.warnings)


@pytest.fixture(scope="module")
def server(kb_home, reader_built):
    srv = DocqaServer(kb_home, "--kb", LAW, env={"DOCQA_READER": "1"}).start().wait_ready()
    yield srv
    srv.stop()


def test_both_apis_carry_the_answer_span(server):
    q = "员工试用期内想辞职，需要提前几天通知公司？"
    native = httpx.post(f"{server.url}/v1/chat", json={"question": q}, timeout=60).json()
    assert "三日" in native["answer_span"]["text"] and native["basis"] == "reader"
    oa = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "docqa", "messages": [
        {"role": "user", "content": q}]}, timeout=60).json()
    assert oa["answer_span"] == native["answer_span"]
    assert oa["choices"][0]["message"]["content"] == native["answer"]
    ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
    assert ready["reader"][LAW]["available"] is True and ready["status"] == "ready"
    assert ready["reader"][LAW]["ranking"] == "window ranker"  # docqa/reader/ranker.json fits the shipped reader
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert "AnswerSpan" in json.dumps(schema["components"]["schemas"])
    for bad in ("试", " ? ", "   "):  # nothing a reader can answer: the usual 422, with the reason
        r = httpx.post(f"{server.url}/v1/chat", json={"question": bad}, timeout=60)
        assert r.status_code == 422 and ("too short" in r.text or "empty" in r.text), r.text
        r = httpx.post(f"{server.url}/v1/chat/completions", json={"model": "docqa", "messages": [
            {"role": "user", "content": "试用期多久？"}, {"role": "user", "content": bad}]}, timeout=60)
        assert r.status_code == 422 if bad.strip() else r.status_code == 200, r.text
    assert httpx.post(f"{server.url}/v1/search", json={"query": "税"}, timeout=60).status_code == 200


def test_a_server_whose_reader_cannot_load_is_degraded_and_still_answers(kb_home, tmp_path, reader_built):
    srv = DocqaServer(kb_home, "--kb", LAW, env={"DOCQA_READER": "1",
                                                 "DOCQA_READER_MODEL": str(tmp_path / "missing-reader")}).start()
    try:
        srv.wait_ready()
        ready = httpx.get(f"{srv.url}/readyz", timeout=10).json()
        assert ready["status"] == "degraded" and ready["reader"][LAW]["available"] is False
        assert "docqa models build" in ready["reader"][LAW]["error"]
        r = httpx.post(f"{srv.url}/v1/chat", json={"question": "劳动合同期限一年以上不满三年的，试用期最长多久？"},
                       timeout=60).json()
        assert "二个月" in r["answer"] and r["answer_span"] is None
        assert any("answered without the reader" in w for w in r["warnings"])
    finally:
        srv.stop()


ART37 = ("第三十七条 劳动者提前三十日以书面形式通知用人单位，可以解除劳动合同。"
         "劳动者在试用期内提前三日通知用人单位，可以解除劳动合同。")


@pytest.fixture(scope="module")
def verifier_built():
    from docqa.reader.runtime import ReaderUnavailable, load_verifier

    try:
        return load_verifier()
    except ReaderUnavailable as e:
        pytest.skip(f"the shipped verifier is not usable here: {e}")


def test_the_verifier_confirms_a_paraphrase_and_finds_a_fact_swapped_from_the_same_article(verifier_built):
    from docqa.reader.grounding import ClaimVerifier

    v = ClaimVerifier(verifier_built)
    right = v.check("试用期内的劳动者提前三日通知用人单位，就可以解除劳动合同。", [ART37])
    # 三十日 is in the article too, for notice outside the probation period
    swapped = v.check("试用期内的劳动者提前三十日通知用人单位，就可以解除劳动合同。", [ART37])
    assert right.state == "confirmed" and right.p >= v.threshold, right
    assert swapped.state != "confirmed" and swapped.p < v.threshold, swapped
    assert v.check("劳动者可以解除劳动合同。", []).state == "none"  # no evidence to read
    english = v.check("Staff may resign with three days' notice.", ["Staff may resign with three days' notice."])
    assert english.state == "none" and "zh" in english.detail  # trained on Chinese claims only: the rules decide


def test_the_guard_with_the_verifier_fails_a_swapped_fact_and_passes_the_right_one(verifier_built, e5_model):
    from docqa.models.embedder import Embedder
    from docqa.reader.grounding import ClaimVerifier
    from service.compliance.guard import check_grounding

    emb = Embedder(e5_model)
    v = ClaimVerifier(verifier_built)
    swapped = "试用期内的劳动者提前三十日通知用人单位，就可以解除劳动合同[1]。"
    rep = check_grounding(swapped, [ART37], emb, 0.5, verifier=v)
    assert not rep.grounded and "'三日'" in rep.sentences[0].contradiction, rep.describe()  # what it says instead
    ok = check_grounding("试用期内的劳动者提前三日通知用人单位，就可以解除劳动合同[1]。", [ART37], emb, 0.5, verifier=v)
    assert ok.grounded and ok.sentences[0].verified == "confirmed", ok.describe()


def test_a_server_whose_verifier_cannot_load_is_degraded_and_still_answers(kb_home, tmp_path):
    srv = DocqaServer(kb_home, "--kb", LAW, env={"DOCQA_GUARD_VERIFIER": "1",
                                                 "DOCQA_VERIFIER_MODEL": str(tmp_path / "missing-verifier")}).start()
    try:
        srv.wait_ready()
        ready = httpx.get(f"{srv.url}/readyz", timeout=10).json()
        assert ready["status"] == "degraded" and ready["verifier"][LAW]["available"] is False
        assert "docqa models build" in ready["verifier"][LAW]["error"]
        r = httpx.post(f"{srv.url}/v1/chat", json={"question": "劳动合同期限一年以上不满三年的，试用期最长多久？"},
                       timeout=60).json()
        assert "二个月" in r["answer"]
    finally:
        srv.stop()


def test_a_server_with_the_verifier_on_says_it_is_in_use(kb_home, verifier_built):
    srv = DocqaServer(kb_home, "--kb", LAW, env={"DOCQA_GUARD_VERIFIER": "1"}).start()
    try:
        srv.wait_ready()
        ready = httpx.get(f"{srv.url}/readyz", timeout=10).json()
        assert ready["status"] == "ready" and ready["verifier"][LAW]["available"] is True
    finally:
        srv.stop()
