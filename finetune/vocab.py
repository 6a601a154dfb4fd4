"""Teach an encoder the characters its tokenizer cannot represent.

all-MiniLM-L6-v2, the offline default, has an English WordPiece vocabulary: most Chinese
characters become [UNK], so two different Chinese sentences look alike to it and no amount of
fine-tuning can tell them apart. Adding the corpus's frequent unknown characters as new tokens
(new embedding rows, initialised by transformers to the mean embedding) gives training something
to learn. A model that already knows the language (bge-small-zh, bert-base-chinese) has nothing
to add and is left unchanged.
"""

from __future__ import annotations

from collections import Counter


def extend_vocab(tokenizer, model, texts: list[str], *, min_count: int = 2) -> int:
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
        tokenizer.add_tokens(missing)
        model.resize_token_embeddings(len(tokenizer))
    return len(missing)
