"""`docqa finetune rerank`: a cross-encoder reranker trained from the KB's own encoder.

The model is a sentence-transformers ``CrossEncoder`` initialised from ``--base`` (an encoder such as
multilingual-e5-small gets a fresh one-logit head; an HF cross-encoder is fine-tuned as it is), trained
with binary cross-entropy on (query, positive) = 1 and (query, hard negative) = 0. Queries, positives
and negatives come from the KB exactly as for ``finetune embed`` (``finetune.embed.data`` and
``mining``: the same pseudo-queries or LLM questions, the same false-negative guards), or from a
pairs file.

Held-out metrics rank each held-out query's positive among its candidates: with ``--kb``, the passages
the KB's own hybrid search returns for it (ranks 1-30, the guard removing other correct passages),
which is what the reranker sees when serving; with ``--pairs``, the record's negatives. Reported before
and after training (recall@1, recall@5, MRR@10); the verdict (``finetune.verdict``) compares MRR@10.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .embed.data import Pair


@dataclass
class RerankConfig:
    base: str
    output_dir: str
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 2e-5
    max_length: int = 256
    warmup_ratio: float = 0.1  # of the steps (transformers 5 takes a ratio as a float warmup_steps)
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class RerankResult:
    output_dir: str
    train_rows: int
    eval_queries: int
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def load_cross_encoder(base: str, max_length: int, device: str = "auto"):
    from sentence_transformers import CrossEncoder
    from transformers.utils import logging as hf_logging

    from ingest.embedder import pick_device, resolve_model_path

    hf_logging.set_verbosity_error()  # "newly initialized classifier" is the point for an encoder base
    try:
        return CrossEncoder(resolve_model_path(base), num_labels=1, max_length=max_length, device=pick_device(device))
    except (OSError, ValueError) as e:
        raise ValueError(f"base {base!r} could not be loaded as a cross-encoder ({type(e).__name__}): give a local "
                         "encoder or cross-encoder directory, or an HF id in the local cache") from None


def rank_metrics(model, pairs: list[Pair]) -> dict[str, float]:
    """Recall@1/5 and MRR@10 of each pair's first positive among it and its negatives (pairs without
    negatives are left out: there is nothing to rank against)."""
    import torch

    ranks = []
    for p in pairs:
        if not p.neg:
            continue
        cands = [p.pos[0], *p.neg]
        scores = model.predict([(p.query, c) for c in cands], activation_fn=torch.nn.Sigmoid(),
                               show_progress_bar=False, convert_to_numpy=True)
        ranks.append(1 + sum(1 for s in scores[1:] if s >= scores[0]))  # ties count against the positive
    if not ranks:
        return {}
    n = len(ranks)
    return {"queries": n, "recall@1": round(sum(r == 1 for r in ranks) / n, 4),
            "recall@5": round(sum(r <= 5 for r in ranks) / n, 4),
            "mrr@10": round(sum(1 / r for r in ranks if r <= 10) / n, 4)}


def training_rows(pairs: list[Pair]) -> dict[str, list]:
    rows: dict[str, list] = {"query": [], "passage": [], "label": []}
    for p in pairs:
        for text, label in [(p.pos[0], 1.0), *((n, 0.0) for n in p.neg)]:
            rows["query"].append(p.query)
            rows["passage"].append(text)
            rows["label"].append(label)
    return rows


def train(cfg: RerankConfig, train_pairs: list[Pair], eval_pairs: list[Pair]) -> RerankResult:
    """Measure, train, measure, save (see the module docstring)."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    t0 = time.perf_counter()
    if not any(p.neg for p in train_pairs):
        raise ValueError("no negatives to train on: mine them from a KB (--kb) or give pairs with \"neg\"")
    model = load_cross_encoder(cfg.base, cfg.max_length, cfg.device)
    result = RerankResult(output_dir=cfg.output_dir, train_rows=0, eval_queries=sum(1 for p in eval_pairs if p.neg))
    result.before = rank_metrics(model, eval_pairs)
    rows = training_rows(train_pairs)
    result.train_rows = len(rows["label"])
    with tempfile.TemporaryDirectory() as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=tmp, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_ratio, save_strategy="no", report_to=[],
            seed=cfg.seed, disable_tqdm=not cfg.progress, logging_steps=50,
            use_cpu=str(model.device) == "cpu")
        CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows),
                            loss=BinaryCrossEntropyLoss(model)).train()
    result.after = rank_metrics(model, eval_pairs)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    result.seconds = round(time.perf_counter() - t0, 1)
    (out / "finetune_metrics.json").write_text(json.dumps({"recipe": asdict(cfg), **result.to_dict()},
                                                          ensure_ascii=False, indent=2), encoding="utf-8")
    return result


def format_table(result: RerankResult) -> str:
    keys = [k for k in ("recall@1", "recall@5", "mrr@10") if k in result.before and k in result.after]
    lines = [f"{'held-out':<10} {'before':>8} {'after':>8}"]
    lines += [f"{k:<10} {result.before[k]:>8.4f} {result.after[k]:>8.4f}" for k in keys]
    return "\n".join(lines)
