"""Boundary scores from a BERT next-sentence-prediction model, all pairs in batched passes.

``P(B follows A) = softmax(logits / temperature)[0]`` (index 0 is "is next" in
``BertForNextSentencePrediction``). The model is an HF id (``bert-base-chinese``) or a local
directory, typically one written by ``docqa finetune nsp``, which trains the head on the user's
own corpus (no pretrained NSP weights are obtainable offline).

Pairs are truncated around the boundary: the END of A and the START of B are kept, because
that is where a topic change shows. Pairs are sorted by length before batching so padding is
small; the result is identical to scoring each pair alone (tests check it).

Pick NSP over embedding similarity when boundaries matter most (legal clauses, notices with
numbered points): it reads the two sides together. It costs one encoder pass per pair, which is
still less than embedding the same text (bench/reports/segmentation.md).
"""

from __future__ import annotations

import numpy as np

from docqa.errors import UserError
from docqa.models.embedder import ModelNotAvailable, pick_device, resolve_model_path

DEFAULT_MAX_LENGTH = 128  # tokens per pair: ~60 characters either side of the boundary


def pair_ids(tokenizer, firsts: list[str], seconds: list[str], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, token_type_ids) per pair: [CLS] tail(A) [SEP] head(B) [SEP] within ``max_length``.

    Shared with ``finetune.nsp`` so training and chunking see pairs built the same way."""
    a_ids = tokenizer(firsts, add_special_tokens=False)["input_ids"] if firsts else []
    b_ids = tokenizer(seconds, add_special_tokens=False)["input_ids"] if seconds else []
    room = max_length - 3
    out = []
    for a, b in zip(a_ids, b_ids, strict=True):
        nb = min(len(b), max(room // 2, room - len(a)))
        na = min(len(a), room - nb)
        a, b = a[len(a) - na:], b[:nb]
        ids = [tokenizer.cls_token_id, *a, tokenizer.sep_token_id, *b, tokenizer.sep_token_id]
        out.append((ids, [0] * (na + 2) + [1] * (nb + 1)))
    return out


def load_nsp(model: str, device: str = "auto") -> tuple:
    """(tokenizer, model, device) for ``model``, loaded once per process (``docqa.models.cache``) and kept in
    eval mode."""
    from docqa.models.cache import MODELS

    dev = pick_device(device)

    def load() -> tuple:
        import torch
        from transformers import AutoTokenizer, BertForNextSentencePrediction
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = resolve_model_path(model)
        try:
            tok = AutoTokenizer.from_pretrained(path)
            dtype = torch.float16 if dev.startswith("cuda") else torch.float32  # fp16 CPU kernels are slow
            net = BertForNextSentencePrediction.from_pretrained(path, dtype=dtype).to(dev).eval()
        except OSError as e:
            raise ModelNotAvailable(
                f"NSP model {model!r} could not be loaded ({e.__class__.__name__}). Give a local directory "
                "written by `docqa finetune nsp` (or a BERT with an NSP head, such as bert-base-chinese, "
                "already in the local HF cache).") from e
        return tok, net, dev

    return MODELS.get("nsp", (model, dev), load)


class NSPScorer:
    """``score_pairs`` -> P(is next) per pair. Light constructor; the model loads on first use."""

    def __init__(self, model: str, *, temperature: float = 1.0, device: str = "auto", batch_size: int = 64,
                 max_length: int = DEFAULT_MAX_LENGTH):
        if temperature <= 0:
            raise UserError("nsp temperature must be > 0")
        self.model_name = model
        self.temperature = temperature
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length

    def score_pairs(self, firsts: list[str], seconds: list[str]) -> np.ndarray:
        if len(firsts) != len(seconds):
            raise ValueError("score_pairs needs as many second texts as first texts")
        if not firsts:
            return np.zeros(0, dtype=np.float32)
        tok, net, dev = load_nsp(self.model_name, self.device)
        pairs = pair_ids(tok, firsts, seconds, self.max_length)
        return nsp_probs(net, tok.pad_token_id or 0, dev, pairs, batch_size=self.batch_size,
                         temperature=self.temperature)


def nsp_probs(net, pad_id: int, device: str, pairs: list[tuple[list[int], list[int]]], *, batch_size: int = 64,
              temperature: float = 1.0) -> np.ndarray:
    """P(is next) of pre-built pairs (``pair_ids``), in length-sorted batches, in input order."""
    import torch

    order = np.argsort([len(ids) for ids, _ in pairs], kind="stable")
    out = np.zeros(len(pairs), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids, types, mask = pad_batch([pairs[i] for i in idx], pad_id)
            logits = net(input_ids=ids.to(device), token_type_ids=types.to(device),
                         attention_mask=mask.to(device)).logits
            out[idx] = torch.softmax(logits.float() / temperature, dim=-1)[:, 0].cpu().numpy()
    return out


def pad_batch(batch: list[tuple[list[int], list[int]]], pad_id: int):
    """(input_ids, token_type_ids, attention_mask) tensors, right-padded to the longest pair."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for r, (a, t) in enumerate(batch):
        ids[r, :len(a)] = torch.tensor(a)
        types[r, :len(t)] = torch.tensor(t)
        mask[r, :len(a)] = 1
    return ids, types, mask
