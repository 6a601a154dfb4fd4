"""Train a sentence-transformers model on pairs with the framework's own trainer, measured before/after.

Reads top to bottom: ``setup`` loads the base model and builds the dataset, loss and held-out
evaluator; ``train`` measures the base model, trains, measures again and saves a plain
sentence-transformers directory (what ``docqa reindex --embed-model DIR`` loads) with
``finetune_metrics.json`` beside the weights.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from .data import Pair


class LossKind(StrEnum):
    """Which in-batch-negatives loss to train with.

    ``mnrl``: MultipleNegativesRankingLoss; fine while batch size x sequence length fits in memory.
    ``cached-mnrl``: the GradCache variant; same maths, but embeds in mini-batches so a batch of
    hundreds (more in-batch negatives, better models) fits on a small GPU or a laptop CPU, at
    ~20% more compute. Pick it whenever you want a batch larger than memory allows.
    """

    MNRL = "mnrl"
    CACHED_MNRL = "cached-mnrl"


@dataclass
class EmbedTrainConfig:
    """Knobs of ``docqa finetune embed``; defaults follow sentence-transformers' recipes for MNRL."""

    base_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    output_dir: str = "embed-model"
    epochs: float = 1.0  # one pass is usually enough: the pairs come from one corpus, more overfits
    batch_size: int = 32  # in-batch negatives = batch_size - 1; larger is better for MNRL
    mini_batch_size: int = 16  # only for cached-mnrl: what is embedded at once
    learning_rate: float = 2e-5  # the standard for fine-tuning BERT-sized bi-encoders
    warmup_ratio: float = 0.1  # warm up over the first 10% of steps, so the first batches do not wreck the model
    loss: LossKind = LossKind.MNRL
    # Truncate texts to this many tokens while training only (None: the model's own). Halving it
    # roughly halves the cost on CPU; the saved model keeps its original length for indexing.
    max_seq_length: int | None = None
    # Add the training texts' characters the base tokenizer maps to [UNK] as new tokens (see
    # finetune/vocab.py). Off by default: measured on CAIL2019+DRCD (bench/finetune_embed.py, 1,000
    # pairs) the new, randomly initialised rows did not learn enough: held-out recall@5 0.025 with
    # them (2 epochs, bench/reports/finetune_embed_vocab.md) vs 0.080 without (1 epoch). Worth it with
    # tens of thousands of pairs, or better, start from an encoder that reads the language.
    extend_vocab: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class EmbedTrainResult:
    output_dir: str
    train_pairs: int
    eval_pairs: int
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


KEY_METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")


def build_evaluator(eval_pairs: list[Pair], corpus: list[str] | None = None, name: str = "heldout"):
    """An InformationRetrievalEvaluator over the held-out pairs.

    The corpus is ``corpus`` (e.g. every unit of the KB, the realistic setting) plus every
    positive and negative of the held-out pairs; a query's relevant documents are its positives.
    """
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    texts: dict[str, str] = {}

    def cid(t: str) -> str:
        return texts.setdefault(t, f"d{len(texts)}")

    for t in corpus or []:
        cid(t)
    queries, relevant = {}, {}
    for i, p in enumerate(eval_pairs):
        queries[f"q{i}"] = p.query
        relevant[f"q{i}"] = {cid(t) for t in p.pos}
        for t in p.neg:
            cid(t)
    return InformationRetrievalEvaluator(
        queries=queries, corpus={v: k for k, v in texts.items()}, relevant_docs=relevant, name=name,
        accuracy_at_k=[1, 5, 10], precision_recall_at_k=[1, 5, 10], mrr_at_k=[10], ndcg_at_k=[10],
        map_at_k=[10], show_progress_bar=False, batch_size=64)


def summarize(raw: dict[str, float], name: str = "heldout") -> dict[str, float]:
    """Pick recall@k, MRR@10 and NDCG@10 out of the evaluator's long metric dict."""
    out: dict[str, float] = {}
    for key, value in raw.items():
        short = key.split(f"{name}_", 1)[-1]
        for metric in KEY_METRICS:
            m, k = metric.split("@")
            if short.endswith(f"{m}@{k}") and "cosine" in short:
                out[metric] = round(float(value), 4)
    return out


def pairs_dataset(pairs: list[Pair]):
    """A ``datasets.Dataset`` of (anchor, positive[, negative]) columns for MNRL.

    A pair with several positives gives one row per positive; the negative column is kept only
    when every row has one (the loss needs the same columns on every row).
    """
    from datasets import Dataset

    rows = [(p.query, pos, p.neg[0] if p.neg else None) for p in pairs for pos in p.pos]
    cols = {"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows]}
    if rows and all(r[2] is not None for r in rows):
        cols["negative"] = [r[2] for r in rows]
    return Dataset.from_dict(cols)


def setup(cfg: EmbedTrainConfig, train_pairs: list[Pair]):
    """Load the base model and make the dataset and loss. Returns (model, dataset, loss)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses

    from ingest.embedder import pick_device, resolve_model_path

    model = SentenceTransformer(resolve_model_path(cfg.base_model), device=pick_device(cfg.device))
    if cfg.extend_vocab:
        from ..vocab import extend_vocab

        texts = [t for p in train_pairs for t in (p.query, *p.pos, *p.neg)]
        extend_vocab(model.tokenizer, model[0].auto_model, texts)
    if cfg.loss == LossKind.CACHED_MNRL:
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg.mini_batch_size)
    else:
        loss = losses.MultipleNegativesRankingLoss(model)
    return model, pairs_dataset(train_pairs), loss


def train(cfg: EmbedTrainConfig, train_pairs: list[Pair], eval_pairs: list[Pair],
          corpus: list[str] | None = None) -> EmbedTrainResult:
    """Measure, train, measure, save. ``eval_pairs`` may be empty (then no before/after numbers)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    if not train_pairs:
        raise ValueError("no training pairs")
    t0 = time.perf_counter()
    model, dataset, loss = setup(cfg, train_pairs)
    evaluator = build_evaluator(eval_pairs, corpus) if eval_pairs else None
    result = EmbedTrainResult(cfg.output_dir, len(train_pairs), len(eval_pairs))
    if evaluator is not None:
        result.before = summarize(evaluator(model))
    # drop_last would silently skip a small dataset entirely; the no-duplicates sampler keeps a
    # query's own positive from appearing as another query's in-batch negative.
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(cfg.output_dir) / "checkpoints"), num_train_epochs=cfg.epochs,
        per_device_train_batch_size=min(cfg.batch_size, len(dataset)), learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio, batch_sampler=BatchSamplers.NO_DUPLICATES, seed=cfg.seed,
        save_strategy="no", report_to="none", logging_steps=10, disable_tqdm=not cfg.progress,
        use_cpu=model.device.type == "cpu", dataloader_drop_last=False)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    full_length = model.max_seq_length
    model.max_seq_length = cfg.max_seq_length or full_length
    trainer.train()
    model.max_seq_length = full_length
    if evaluator is not None:
        result.after = summarize(evaluator(model))
    out = Path(cfg.output_dir)
    model.save(str(out))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # save_strategy="no": only logs were there
    result.seconds = round(time.perf_counter() - t0, 1)
    (out / "finetune_metrics.json").write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result


def format_table(result: EmbedTrainResult) -> str:
    """The before/after table printed at the end of a run."""
    lines = ["| metric | base | fine-tuned | delta |", "| --- | --- | --- | --- |"]
    for m in KEY_METRICS:
        if m in result.before and m in result.after:
            b, a = result.before[m], result.after[m]
            lines.append(f"| {m} | {b:.4f} | {a:.4f} | {a - b:+.4f} |")
    return "\n".join(lines)
