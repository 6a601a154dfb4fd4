"""Key information: keyphrases on real Chinese and English text, MMR diversity, the LLM hook, NER."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from docqa.document import Block, Document
from docqa.settings import load_settings
from docqa.text.tokenize import STOPWORDS
from docqa.units import Level
from ingest.chunking import document_units
from ingest.keyinfo import Keyphraser, candidates
from ingest.keyinfo.keyphrases import english_candidates, mmr
from ingest.keyinfo.llm import llm_keyphrases, parse_phrases, render_messages


def labour_law_paragraphs(shared_data: Path) -> list[str]:
    path = shared_data / "documents_zh" / "md" / "劳动合同法(2012-12-28).md"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    text = path.read_text(encoding="utf-8")
    return [p for p in text.split("\n\n") if p.startswith("第") and "条" in p[:8] and len(p) > 60]


def squad_contexts(shared_data: Path, n: int = 4) -> list[str]:
    path = shared_data / "squad2_dev_sample" / "dev-v2.0.json"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [p["context"] for art in data[:n] for p in art["paragraphs"][:1]]


def test_chinese_keyphrases_come_from_the_text(shared_data: Path, embed_model: str) -> None:
    from docqa.models.embedder import shared_embedder

    paras = labour_law_paragraphs(shared_data)[:6]
    kp = Keyphraser(shared_embedder(embed_model, "cpu"), top_n=5)
    phrases = kp.extract(paras)
    assert len(phrases) == len(paras)
    for text, ph in zip(paras, phrases, strict=True):
        assert 1 <= len(ph) <= 5 and len(set(ph)) == len(ph)
        assert all(p in text and p not in STOPWORDS and len(p) >= 2 for p in ph)
    probation = next(i for i, p in enumerate(paras) if p.count("试用期") >= 2) if any(
        p.count("试用期") >= 2 for p in paras) else None
    if probation is not None:
        assert "试用期" in phrases[probation]
    # the statistical ranking alone also works (no embedder configured)
    plain = Keyphraser(None, top_n=3).extract(paras[:2])
    assert all(len(p) == 3 for p in plain)


def test_english_keyphrases_are_ngrams_of_the_text(shared_data: Path, embed_model: str) -> None:
    from docqa.models.embedder import shared_embedder

    ctxs = squad_contexts(shared_data)
    phrases = Keyphraser(shared_embedder(embed_model, "cpu"), top_n=5).extract(ctxs)
    for text, ph in zip(ctxs, phrases, strict=True):
        assert len(ph) == 5
        for p in ph:
            words = p.lower().split()
            assert p.lower() in text.lower() and 1 <= len(words) <= 3
            assert words[0] not in STOPWORDS and words[-1] not in STOPWORDS
    cands = english_candidates("The Normans were in Normandy. The Normans gave their name to Normandy.")
    assert cands[0][0] in {"Normans", "Normandy"}


def test_mmr_trades_relevance_for_diversity() -> None:
    doc = np.array([1.0, 0.0, 0.0])
    near = np.array([0.9, 0.436, 0.0])
    cands = np.stack([near, near * 0.999 + np.array([0, 0, 0.0447]), np.array([0.8, 0.0, 0.6]),
                      np.array([0.0, 1.0, 0.0])])
    cands /= np.linalg.norm(cands, axis=1, keepdims=True)
    weights = np.array([1.0, 1.0, 0.9, 0.1])
    assert mmr(doc, cands, weights, 2, diversity=0.0)[:2] == [0, 1]  # pure relevance: the twins
    assert set(mmr(doc, cands, weights, 2, diversity=0.7)) == {0, 2}  # diversity: one twin and the other


def test_candidate_methods_on_chinese(shared_data: Path) -> None:
    text = labour_law_paragraphs(shared_data)[3]
    for method in ("tfidf", "textrank"):
        got = candidates(text, method, n=10)
        assert 0 < len(got) <= 10
        assert all(w in text for w, _ in got)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


def test_llm_keyphrases_are_used_when_given_and_skipped_when_not(tmp_path: Path, embed_model: str) -> None:
    text = "劳动者在试用期内提前三日通知用人单位，可以解除劳动合同。用人单位应当支付工资。"
    msgs = render_messages(text, 4, ["试用期"])
    assert msgs[0]["role"] == "user" and text in msgs[0]["content"] and "试用期" in msgs[0]["content"]
    assert parse_phrases("1. 试用期解除\n- 提前三日通知\n“工资支付”\n", 5) == ["试用期解除", "提前三日通知", "工资支付"]
    seen: list[list[dict]] = []

    def generate(messages: list[dict]) -> str:
        seen.append(messages)
        return "试用期解除\n提前通知期限"

    def broken(messages: list[dict]) -> str:
        raise ConnectionError("LLM server down")

    assert llm_keyphrases([text], None, 4) is None
    assert llm_keyphrases([text], broken, 4) is None
    doc = Document(doc_id="d", source="t", title="规定", blocks=[Block(text=text)], content_hash="h")
    settings = load_settings(home=tmp_path, device="cpu")
    seg = next(u for u in document_units(doc, settings, generate=generate) if u.level == Level.SEGMENT)
    assert "试用期解除" in seg.keyinfo and "提前通知期限" in seg.keyinfo and len(seen) == 1
    plain = next(u for u in document_units(doc, settings, generate=broken) if u.level == Level.SEGMENT)
    assert "试用期解除" not in plain.keyinfo and plain.keyinfo.startswith("规定 |")


def test_named_entities_with_jiagu() -> None:
    pytest.importorskip("jiagu")
    from ingest.keyinfo.ner import entities

    ents = entities("国务院总理李克强在北京主持召开国务院常务会议，部署推进长江经济带发展。")
    assert ents and all(len(e) >= 2 for e in ents)
    assert all(e in "国务院总理李克强在北京主持召开国务院常务会议，部署推进长江经济带发展。" for e in ents)
