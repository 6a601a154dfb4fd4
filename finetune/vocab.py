"""Teach an encoder the characters its tokenizer cannot represent.

all-MiniLM-L6-v2, the offline default, has an English WordPiece vocabulary: most Chinese
characters become [UNK], so two different Chinese sentences look alike to it and no amount of
fine-tuning can tell them apart. Adding the corpus's frequent unknown characters as new tokens
gives training something to learn. The new rows must start *different* from each other:
transformers' ``mean_resizing`` draws them from N(mean, 1e-9 x covariance), i.e. all equal to the
mean, so every new character still looks the same and a short fine-tune cannot pull thousands of
them apart. We draw them from the old rows' own per-dimension mean and spread instead, which
makes a text's characters distinguishable from step 0 (like random features) and leaves training
to give them meaning. A model that already knows the language (bge-small-zh, bert-base-chinese)
has nothing to add and is left unchanged.
"""

from __future__ import annotations

from collections import Counter


def extend_vocab(tokenizer, model, texts: list[str], *, min_count: int = 2, seed: int = 0) -> int:
    """Add characters of ``texts`` seen at least ``min_count`` times that ``tokenizer`` maps to its
    unknown token; resize ``model``'s input embeddings. Returns how many were added."""
    counts = Counter(c for t in texts for c in t if not c.isspace())
    chars = [c for c, n in counts.most_common() if n >= min_count]
    unk = tokenizer.unk_token_id
    if not chars or unk is None:
        return 0
    ids = tokenizer(chars, add_special_tokens=False)["input_ids"]
    missing = [c for c, i in zip(chars, ids, strict=True) if i == [unk]]
    if missing:
        import torch

        old = model.get_input_embeddings().weight.shape[0]
        tokenizer.add_tokens(missing)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        weight = model.get_input_embeddings().weight
        with torch.no_grad():
            ref = weight[:old].float()
            gen = torch.Generator().manual_seed(seed)
            noise = torch.randn(weight.shape[0] - old, weight.shape[1], generator=gen)
            weight[old:] = (ref.mean(0) + noise * ref.std(0)).to(weight.dtype)
    return len(missing)
