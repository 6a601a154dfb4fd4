"""Semantic chunking: batched NSP scoring on a tiny random BERT built here, and the merge rules.

The merge-rule tests drive the real chunker with a table-backed scorer (the scorer interface is
one method); the NSP tests use a real ``BertForNextSentencePrediction`` random-initialised from a
``BertConfig`` in a temporary directory, so they run in seconds on CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tiny_models import make_tiny_bert

from docqa.document import Block, BlockKind, Document
from docqa.models.nsp import NSPScorer, load_nsp, pair_ids
from docqa.settings import load_settings
from docqa.text.tokenize import count_tokens
from ingest.chunking import chunk_document
from ingest.chunking.semantic import chunk_semantic, merge_pieces, pieces_of

TEXTS = [
    "第一条 为规范劳动合同管理，保护劳动者合法权益，制定本办法。",
    "第二条 本办法适用于公司全体员工。",
    "劳动者在试用期内提前三日通知用人单位，可以解除劳动合同。",
    "The board approved the budget. Revenue rose by five percent in the third quarter.",
    "短句。",
    "用人单位未及时足额支付劳动报酬的，劳动者可以解除劳动合同，并要求经济补偿。" * 3,
]


@pytest.fixture(scope="module")
def tiny_nsp(tmp_path_factory) -> str:
    return str(make_tiny_bert(tmp_path_factory.mktemp("tiny-nsp"), TEXTS))


class TableScorer:
    """Scores from a dict keyed by (first, second); records what it was asked."""

    def __init__(self, table: dict[tuple[str, str], float], default: float = 0.0):
        self.table, self.default, self.calls = table, default, []

    def score_pairs(self, firsts, seconds):
        self.calls.append(list(zip(firsts, seconds, strict=True)))
        return np.array([self.table.get((a, b), self.default) for a, b in zip(firsts, seconds, strict=True)])


def doc_of(*blocks: Block, title: str = "") -> Document:
    return Document(doc_id="d1", source="test", title=title, blocks=list(blocks), content_hash="h")


def para(text: str, path: list[str] | None = None) -> Block:
    return Block(text=text, heading_path=path or [])


# --- NSP scorer ---
def test_batched_scoring_equals_pair_by_pair(tiny_nsp: str) -> None:
    firsts = [TEXTS[i % len(TEXTS)] for i in range(9)]
    seconds = [TEXTS[(i * 2 + 1) % len(TEXTS)] for i in range(9)]
    batched = NSPScorer(tiny_nsp, batch_size=4).score_pairs(firsts, seconds)
    single = [NSPScorer(tiny_nsp, batch_size=1).score_pairs([a], [b])[0] for a, b in zip(firsts, seconds, strict=True)]
    assert batched.shape == (9,)
    assert np.all((batched > 0) & (batched < 1))
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert np.ptp(batched) > 0  # different pairs, different scores: the model really reads them


def test_temperature_divides_the_logits(tiny_nsp: str) -> None:
    firsts, seconds = TEXTS[:4], TEXTS[1:5]
    p1 = NSPScorer(tiny_nsp, temperature=1.0).score_pairs(firsts, seconds)
    p3 = NSPScorer(tiny_nsp, temperature=3.0).score_pairs(firsts, seconds)
    logit_gap = np.log(p1 / (1 - p1))  # (l0 - l1) at T=1
    np.testing.assert_allclose(p3, 1 / (1 + np.exp(-logit_gap / 3.0)), atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        NSPScorer(tiny_nsp, temperature=0)


def test_pairs_keep_both_sides_of_the_boundary(tiny_nsp: str) -> None:
    tok, _, _ = load_nsp(tiny_nsp, "cpu")
    a, b = "甲" * 100 + "乙", "丙" + "丁" * 100
    tok_a = tok(a, add_special_tokens=False)["input_ids"]
    tok_b = tok(b, add_special_tokens=False)["input_ids"]
    (ids, types), = pair_ids(tok, [a], [b], max_length=64)
    assert len(ids) == len(types) == 64
    sep = ids.index(tok.sep_token_id)
    assert ids[sep - 1] == tok_a[-1]  # the END of A is kept ...
    assert ids[sep + 1] == tok_b[0]  # ... and the START of B
    assert types[sep + 1] == 1 and types[sep] == 0


def test_nsp_chunker_from_settings(tiny_nsp: str, tmp_path: Path) -> None:
    doc = doc_of(*(para(t) for t in TEXTS))
    settings = load_settings(home=tmp_path, chunker="nsp", nsp_model=tiny_nsp, nsp_threshold=0.0, device="cpu")
    merged = chunk_document(doc, settings)
    cut = chunk_document(doc, settings.model_copy(update={"nsp_threshold": 1.0}))
    assert len(merged) < len(cut)  # threshold 0 merges what fits, threshold 1 cuts everywhere
    assert all(count_tokens(u.text) <= settings.chunk_max_tokens for u in merged + cut)
    with pytest.raises(ValueError, match="finetune nsp"):
        chunk_document(doc, load_settings(home=tmp_path, chunker="nsp"))


# --- merge rules ---
def test_threshold_decides_the_cuts() -> None:
    texts = ["甲方应当按时付款，逾期按日计息。", "付款以银行转账方式进行，不收现金。", "乙方负责货物运输并承担运费。",
             "运输途中的损失由乙方承担。"]
    scorer = TableScorer({(texts[0], texts[1]): 0.9, (texts[1], texts[2]): 0.2, (texts[2], texts[3]): 0.8})
    units = chunk_semantic(doc_of(*(para(t) for t in texts)), scorer, threshold=0.5, max_tokens=256, min_tokens=0)
    assert [u.text for u in units] == [f"{texts[0]}\n{texts[1]}", f"{texts[2]}\n{texts[3]}"]
    assert len(scorer.calls) == 1 and len(scorer.calls[0]) == 3  # every pair, one call


def test_max_length_cuts_even_when_related() -> None:
    texts = [f"第{i}条 " + "合同履行期间双方应当诚实守信。" * 2 for i in range(6)]
    scorer = TableScorer({}, default=0.99)
    units = chunk_semantic(doc_of(*(para(t) for t in texts)), scorer, threshold=0.5, max_tokens=70, min_tokens=0)
    assert len(units) > 1
    assert all(count_tokens(u.text) <= 70 for u in units)
    assert "\n".join(u.text for u in units) == "\n".join(texts)  # nothing lost, order kept


def test_headings_always_cut() -> None:
    h = Block(text="第二章 解除", kind=BlockKind.HEADING, level=2)
    a, b = para("第三条 劳动者可以解除合同。", ["第一章"]), para("第四条 用人单位可以解除合同。", ["第二章 解除"])
    scorer = TableScorer({}, default=1.0)
    units = chunk_semantic(doc_of(a, h, b), scorer, threshold=0.0, max_tokens=256, min_tokens=0)
    assert [u.text for u in units] == [a.text, b.text]
    assert units[1].heading_path == ["第二章 解除"]
    assert all(len(c) == 0 for c in scorer.calls)  # no pair across a heading is even scored


def test_tiny_fragment_joins_its_closer_neighbour() -> None:
    texts = ["本合同自双方签字之日起生效，有效期三年。", "附件一：", "付款计划表如下，按季度支付。",
             "其他事项另行约定。"]
    scorer = TableScorer({(texts[0], texts[1]): 0.1, (texts[1], texts[2]): 0.3, (texts[2], texts[3]): 0.1})
    units = chunk_semantic(doc_of(*(para(t) for t in texts)), scorer, threshold=0.5, max_tokens=256, min_tokens=8)
    assert f"{texts[1]}\n{texts[2]}" in [u.text for u in units]  # attached forward: higher score
    assert all(count_tokens(u.text) >= 8 for u in units)


def test_long_paragraph_scored_by_sentences() -> None:
    long = "".join(f"第{i}项规定适用于全部员工的年度考核。" for i in range(30))
    pieces = pieces_of([para(long)], max_tokens=64)
    assert len(pieces) == 30 and all(p.tokens <= 64 for p in pieces)
    chunks = merge_pieces(pieces, np.ones(29), threshold=0.5, max_tokens=64, min_tokens=0)
    assert "".join(p.text for c in chunks for p in c) == long
    assert all(sum(p.tokens for p in c) <= 64 for c in chunks)


def test_embedding_scorer_prefers_related_text(embed_model: str, tmp_path: Path) -> None:
    from ingest.chunking import boundary_scorer

    scorer = boundary_scorer(load_settings(home=tmp_path, chunker="embedding", device="cpu"))
    a = "The cat sat on the mat and purred."
    s = scorer.score_pairs([a, a], ["A cat was sitting on a rug, purring.", "Quarterly bond yields rose sharply."])
    assert -1 <= s.min() and s.max() <= 1 + 1e-5
    assert s[0] > s[1] + 0.1  # e5 cosines are compressed: related .95, unrelated .76
    assert math.isclose(float(scorer.score_pairs([a], [a])[0]), 1.0, abs_tol=1e-4)
