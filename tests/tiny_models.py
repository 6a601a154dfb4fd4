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
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    # transformers 5 builds the fast tokenizer from ``vocab`` (a vocab_file alone is ignored: every
    # character would be [UNK]); older releases read the file
    try:
        tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    except TypeError:
        tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    assert tok.convert_tokens_to_ids(chars[:1]) != [tok.unk_token_id] or not chars, "tiny tokenizer lost its vocab"
    cfg = BertConfig(vocab_size=len(chars) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=256)
    torch.manual_seed(0)
    (BertForNextSentencePrediction if nsp_head else BertModel)(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
