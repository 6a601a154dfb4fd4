"""Characters the base tokenizer maps to [UNK] become trainable tokens, and the tuned model keeps them."""

from __future__ import annotations

import numpy as np
import pytest
from test_embed_train import make_tiny_st

from finetune.embed.data import Pair
from finetune.embed.train import EmbedTrainConfig, train
from finetune.vocab import extend_vocab

# "鲲" and "鹏" are not in MiniLM's WordPiece vocabulary: without new tokens both are [UNK]
A, B = "鲲鲲鲲的条款", "鹏鹏鹏的条款"


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    return make_tiny_st(tmp_path_factory.mktemp("tiny-st-vocab"))


def test_extend_vocab_adds_only_unknown_characters(tiny_st):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_st, device="cpu")
    tok = model.tokenizer
    unk = tok.unk_token_id
    assert tok("鲲", add_special_tokens=False)["input_ids"] == [unk]
    before = len(tok)
    added = extend_vocab(tok, model[0].auto_model, [A, B, "the contract"], min_count=2)
    assert added >= 2 and len(tok) == before + added
    assert tok("鲲", add_special_tokens=False)["input_ids"] != [unk]
    assert model[0].auto_model.get_input_embeddings().num_embeddings == len(tok)
    assert extend_vocab(tok, model[0].auto_model, [A, B], min_count=2) == 0  # nothing left to add


def test_new_rows_start_distinct_with_the_old_rows_spread(tiny_st):
    """transformers' mean_resizing would make every new row (nearly) the mean: all new characters
    alike. Ours draw from the old rows' per-dimension mean and spread, so they differ from step 0."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_st, device="cpu")
    emb = model[0].auto_model.get_input_embeddings()
    old = emb.weight.shape[0]
    added = extend_vocab(model.tokenizer, model[0].auto_model, [A, B, A, B], min_count=2)
    w = model[0].auto_model.get_input_embeddings().weight.detach()
    new, ref = w[old:], w[:old]
    assert added == new.shape[0] >= 2
    assert torch.cdist(new, new).masked_fill(torch.eye(added, dtype=torch.bool), 1e9).min() > 0.1
    ratio = new.std(0).mean() / ref.std(0).mean()
    assert 0.5 < float(ratio) < 2.0
    va, vb = model.encode([A, B], normalize_embeddings=True)
    assert not np.allclose(va, vb, atol=1e-4)  # distinguishable before any training


def test_tuned_model_tells_apart_what_the_base_could_not(tiny_st, tmp_path):
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(tiny_st, device="cpu")
    va, vb = base.encode([A, B], normalize_embeddings=True)
    assert np.allclose(va, vb, atol=1e-5)  # all [UNK]: identical inputs
    pairs = [Pair(f"关于鲲的问题{i}", [A]) for i in range(4)] + [Pair(f"关于鹏的问题{i}", [B]) for i in range(4)]
    cfg = EmbedTrainConfig(base_model=tiny_st, output_dir=str(tmp_path / "out"), epochs=2, batch_size=4,
                           learning_rate=1e-3, progress=False, device="cpu", extend_vocab=True)
    train(cfg, pairs, [])
    tuned = SentenceTransformer(str(tmp_path / "out"), device="cpu")
    ta, tb = tuned.encode([A, B], normalize_embeddings=True)
    assert not np.allclose(ta, tb, atol=1e-3)
