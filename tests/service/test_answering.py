"""The extractive answerer through ``service.answering.answer_question`` on a real KB built from
examples/docs (see conftest): cited answers, refusals in the question's language, follow-ups."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from docqa_server import LAW

from docqa.kb import KnowledgeBase
from docqa.settings import load_settings
from service.answering import answer_question, stream_answer

pytestmark = pytest.mark.slow  # left out of `make test-fast`

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


def test_quickstart_question_cites_the_article_by_its_pinpoint_label(kb):
    r = answer_question(kb, "劳动合同期限一年以上不满三年的，试用期最长是多久？")  # deploy/quickstart.sh asks it
    assert not r.refused and "二个月" in r.answer
    assert cited(r)[1]["label"] == "《中华人民共和国劳动合同法》第十九条"


@pytest.mark.parametrize("question", ["劳动合同法第十九条规定了什么？", "第19条是怎么规定的"])
def test_a_question_naming_an_article_is_answered_from_that_article_in_document_order(kb, question):
    r = answer_question(kb, question)
    assert not r.refused and r.evidence_score == 1.0
    first = cited(r)[1]
    assert first["label"] == "《中华人民共和国劳动合同法》第十九条" and set(cited(r)) == {1}
    quoted = re.sub(r"\[\d+\]", "", r.answer)
    assert quoted.startswith("第十九条 劳动合同期限三个月以上不满一年的")
    at = [first["text"].replace("\n", "").find(p) for p in ("第十九条", "同一用人单位", "试用期包含在")]
    assert -1 not in at and at == sorted(at) and "同一用人单位" in quoted  # the article's sentences, in its order


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


class _Counting:
    """The KB's real embedder, counting the sentences it is asked to embed."""

    def __init__(self, embedder):
        self.embedder, self.embedded = embedder, 0

    def encode_queries(self, texts):
        return self.embedder.encode_queries(texts)

    def encode_docs(self, texts):
        self.embedded += len(texts)
        return self.embedder.encode_docs(texts)


def test_bound_pruned_scoring_keeps_the_exact_top_and_embeds_less(kb, shared_data):
    """score_sentences embeds sentences best coverage bound first and stops when nothing left can reach
    the top three: on real questions over real passages its top three (sentence, passage, score) are
    exactly those of scoring every sentence (evidence.support_scores), answers and refusals alike."""
    import json

    import numpy as np

    from docqa.search import search
    from docqa.text.coverage import support_scores
    from service.answering.extractive import TOP, evidence_sentences, score_sentences

    raw = json.loads((shared_data / "cmrc2018" / "squad-style-data_cmrc2018_trial.json").read_text(encoding="utf-8"))
    questions = [qa["question"] for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]][:40]
    questions += ["2019年国庆节放假几天？", "火星上钨的沸点是多少？", "How are incidents classified?"]
    embedded = total = 0
    for q in questions:
        hits = search(kb, q, 5)
        counting = _Counting(kb.embedder)
        fast = score_sentences(q, hits, counting)
        cands = [(i, s) for i, h in enumerate(hits) for s in evidence_sentences(h.text)]
        texts = [s for _, s in cands]
        full = support_scores(q, texts, kb.embedder.encode_queries([q])[0], kb.embedder.encode_docs(texts))
        order = sorted(range(len(cands)), key=lambda j: (-float(full[j]), cands[j][0], j))[:TOP]
        assert [(s.hit_index, s.sentence) for s in fast[:TOP]] == [cands[j] for j in order], q
        assert np.allclose([s.score for s in fast[:TOP]], [full[j] for j in order], atol=1e-5), q
        embedded += counting.embedded
        total += len(cands)
    assert embedded < 0.9 * total, (embedded, total)  # the point of it: sentences that cannot win are not embedded


def test_stored_evidence_vectors_score_as_embedding_does_and_embed_nothing(kb, shared_data):
    """#24: ingestion stored every segment's evidence vectors, so answering embeds no passage sentence
    (a cold server answers as fast as a warm one) and the top sentences and scores are those of embedding
    them now (float16 on disk: scores within 2e-3)."""
    import json

    from docqa.search import search
    from service.answering.extractive import TOP, evidence_sentences, score_sentences

    raw = json.loads((shared_data / "cmrc2018" / "squad-style-data_cmrc2018_trial.json").read_text(encoding="utf-8"))
    questions = [qa["question"] for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]][:20]
    questions += ["2019年国庆节放假几天？", "劳动合同期限三个月以上不满一年的，试用期不得超过多久？"]
    for q in questions:
        hits = search(kb, q, 5)
        assert all(kb.evidence.lookup(h.unit_id, evidence_sentences(h.text)) is not None for h in hits), q
        counting = _Counting(kb.embedder)
        stored = score_sentences(q, hits, counting, kb.evidence)[:TOP]
        fresh = score_sentences(q, hits, kb.embedder)[:TOP]
        assert counting.embedded == 0, q
        assert np.allclose([s.score for s in stored], [s.score for s in fresh], atol=2e-3), q
        for a, b in zip(stored, fresh, strict=True):  # the same sentences, but where a near-tie may swap
            assert (a.hit_index, a.sentence) == (b.hit_index, b.sentence) or abs(a.score - b.score) < 4e-3, q


def test_evidence_warm_up_fills_the_cache_only_for_sentences_not_stored(kb, tmp_path):
    from docqa.kb.evidence import SUBDIR
    from docqa.kb.manifest import gen_dir
    from docqa.search import search
    from service.answering.extractive import evidence_sentences, warm_evidence

    assert warm_evidence(kb) == 0  # stored at ingest: nothing to warm
    legacy_home = tmp_path / "home"  # the same KB as one ingested before evidence vectors were stored
    shutil.copytree(kb.root.parent, legacy_home, ignore=shutil.ignore_patterns("*.lock"))
    shutil.rmtree(gen_dir(legacy_home / kb.name, kb.generation) / SUBDIR)
    old = KnowledgeBase.open(kb.name, load_settings(home=legacy_home))
    try:
        old.embedder.clear_cache()
        seen: list[tuple[int, int]] = []
        n = warm_evidence(old, progress=lambda done, total: seen.append((done, total)))
        assert n > 0 and seen[-1] == (n, n)
        hits = search(old, "劳动合同期限三个月以上不满一年的，试用期不得超过多久？", 5)
        wanted = [s for h in hits for s in evidence_sentences(h.text)]
        assert wanted and all(s in old.embedder._cache for s in wanted)  # answering will embed none of them
        assert warm_evidence(old, stop=lambda: True) == 0  # a stale view stops at once
    finally:
        old.close()


