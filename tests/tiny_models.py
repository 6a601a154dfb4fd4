"""Tiny random-initialised models the tests build in temporary folders (no downloads)."""

from __future__ import annotations

from pathlib import Path


def make_tiny_bert(folder: Path, texts: list[str], *, nsp_head: bool = True) -> Path:
    """A random-initialised 2-layer BERT (NSP head or plain encoder) with a character vocabulary
    covering ``texts``, saved with its tokenizer like any HF model directory."""
    import torch
    from transformers import BertConfig, BertForNextSentencePrediction, BertModel, BertTokenizerFast

    chars = sorted({c for t in texts for c in t.lower() if not c.isspace()})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n",
                                      encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    cfg = BertConfig(vocab_size=len(chars) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=256)
    torch.manual_seed(0)
    (BertForNextSentencePrediction if nsp_head else BertModel)(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
