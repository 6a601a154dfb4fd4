"""Train a sentence-transformers model on pairs with the framework's own trainer, measured before/after.

Reads top to bottom: ``load_base`` loads the base model, ``setup`` extends its vocabulary (optional)
and builds the dataset and loss; ``train`` measures the base model, trains, measures again and saves a plain
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

from docqa.errors import UserError
from docqa.models import E5_SMALL
from finetune.embed.data import Pair


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

    base_model: str = E5_SMALL  # the product's default embedding model (docqa.settings)
    output_dir: str = "embed-model"
    # None: 2 below 10,000 pairs, else 1. Measured on CAIL2019+DRCD with 1,000 pairs and new token
    # rows: hit@5 .483 after 1 epoch, .518 after 2 (bench/reports/finetune_embed.md); with many
    # pairs one pass already gives the rows enough steps, and more mostly overfits one corpus.
    epochs: float | None = None
    batch_size: int = 32  # in-batch negatives = batch_size - 1; larger is better for MNRL
    mini_batch_size: int = 16  # only for cached-mnrl: what is embedded at once
    # None: 2e-5, the standard for fine-tuning BERT-sized bi-encoders, or 1e-4 when new token rows
    # were added (random rows must move far in one short run; measured on CAIL2019+DRCD, see
    # bench/reports/finetune_embed.md).
    learning_rate: float | None = None
    warmup_ratio: float = 0.1  # warm up over the first 10% of steps, so the first batches do not wreck the model
    loss: LossKind = LossKind.MNRL
    # Truncate texts to this many tokens while training only (None: the model's own). Halving it
    # roughly halves the cost on CPU; the saved model keeps its original length for indexing.
    max_seq_length: int | None = None
    # Add the corpus's characters the base tokenizer maps to [UNK] as new, randomly initialised
    # tokens (finetune/vocab.py). A no-op for an encoder that reads the language; for the offline
    # all-MiniLM-L6-v2 on Chinese it is most of the gain (bench/reports/finetune_embed.md).
    extend_vocab: bool = True
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
    extended: dict[str, float] = field(default_factory=dict)  # base + new vocabulary rows, before training
    added_tokens: int = 0
    learning_rate: float = 0.0
    epochs: float = 0.0
    train_rows: int = 0  # (query, positive[, negative]) rows actually trained on
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# hit@k: share of queries with any relevant document in the top k (what bench/retrieval.py calls R@k);
# recall@k: share of each query's relevant documents found in the top k (equal to hit@k with one).
KEY_METRICS = ("hit@1", "hit@5", "hit@10", "recall@5", "recall@10", "mrr@10", "ndcg@10")
_EVALUATOR_NAME = {"hit": "accuracy"}


def build_evaluator(eval_pairs: list[Pair], corpus: list[str] | None = None, name: str = "heldout",
                    prompts: tuple[str, str] = ("", "")):
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
        query_prompt=prompts[0] or None, corpus_prompt=prompts[1] or None,
        accuracy_at_k=[1, 5, 10], precision_recall_at_k=[1, 5, 10], mrr_at_k=[10], ndcg_at_k=[10],
        map_at_k=[10], show_progress_bar=False, batch_size=64)


def summarize(raw: dict[str, float], name: str = "heldout") -> dict[str, float]:
    """Pick recall@k, MRR@10 and NDCG@10 out of the evaluator's long metric dict."""
    out: dict[str, float] = {}
    for key, value in raw.items():
        short = key.split(f"{name}_", 1)[-1]
        for metric in KEY_METRICS:
            m, k = metric.split("@")
            if short.endswith(f"{_EVALUATOR_NAME.get(m, m)}@{k}") and "cosine" in short:
                out[metric] = round(float(value), 4)
    return out


def pairs_dataset(pairs: list[Pair], *, min_negative_share: float = 0.9):
    """A ``datasets.Dataset`` of (anchor, positive[, negative]) columns for MNRL.

    A pair with several positives gives one row per positive. The loss needs the same columns on
    every row: when at least ``min_negative_share`` of the rows have a (mined) negative, the rows
    without one are left out; otherwise the negative column is dropped and in-batch negatives alone
    remain. Either way, a few pairs the miner found nothing for never cost every hard negative.
    """
    from datasets import Dataset

    rows = [(p.query, pos, p.neg[0] if p.neg else None) for p in pairs for pos in p.pos]
    with_neg = [r for r in rows if r[2] is not None]
    if rows and len(with_neg) >= min_negative_share * len(rows):
        rows = with_neg
    cols = {"anchor": [r[0] for r in rows], "positive": [r[1] for r in rows]}
    if rows and all(r[2] is not None for r in rows):
        cols["negative"] = [r[2] for r in rows]
    return Dataset.from_dict(cols)


def load_base(cfg: EmbedTrainConfig):
    """The base sentence-transformers model, on the configured device."""
    from sentence_transformers import SentenceTransformer

    from docqa.models.embedder import pick_device, resolve_model_path

    return SentenceTransformer(resolve_model_path(cfg.base_model), device=pick_device(cfg.device))


def setup(cfg: EmbedTrainConfig, model, train_pairs: list[Pair], corpus: list[str] | None = None):
    """Extend the vocabulary if asked, make the dataset and loss. Returns (dataset, loss, tokens added).

    With ``extend_vocab`` the new characters come from the pairs and ``corpus`` (the KB's units):
    what the tuned model will embed, not only what it trains on."""
    from sentence_transformers.sentence_transformer import losses

    added = 0
    if cfg.extend_vocab:
        from finetune.vocab import extend_vocab

        texts = [t for p in train_pairs for t in (p.query, *p.pos, *p.neg)] + list(corpus or [])
        added = extend_vocab(model.tokenizer, model[0].auto_model, texts, seed=cfg.seed)
    if cfg.loss == LossKind.CACHED_MNRL:
        loss = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg.mini_batch_size)
    else:
        loss = losses.MultipleNegativesRankingLoss(model)
    return pairs_dataset(train_pairs), loss, added


def train(cfg: EmbedTrainConfig, train_pairs: list[Pair], eval_pairs: list[Pair],
          corpus: list[str] | None = None) -> EmbedTrainResult:
    """Measure, train, measure, save. ``eval_pairs`` may be empty (then no before/after numbers).

    ``before`` is the unmodified base model; with ``extend_vocab``, ``extended`` is the base model
    with the new (untrained, random) token rows, so the report shows what training itself added."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    from docqa.models.embedder import model_prompts

    if not train_pairs:
        raise UserError("no training pairs")
    t0 = time.perf_counter()
    model = load_base(cfg)
    # e5 reads "query: ..." and "passage: ...": measured and trained as it will be served
    query_prompt, doc_prompt = model_prompts(model)
    evaluator = build_evaluator(eval_pairs, corpus, prompts=(query_prompt, doc_prompt)) if eval_pairs else None
    result = EmbedTrainResult(cfg.output_dir, len(train_pairs), len(eval_pairs))
    if evaluator is not None:
        result.before = summarize(evaluator(model))
    dataset, loss, result.added_tokens = setup(cfg, model, train_pairs, corpus)
    result.train_rows = len(dataset)
    result.learning_rate = cfg.learning_rate or (1e-4 if result.added_tokens else 2e-5)
    result.epochs = cfg.epochs or (2.0 if len(train_pairs) < 10_000 else 1.0)
    if evaluator is not None and result.added_tokens:
        result.extended = summarize(evaluator(model))
    # drop_last would silently skip a small dataset entirely; the no-duplicates sampler keeps a
    # query's own positive from appearing as another query's in-batch negative.
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(cfg.output_dir) / "checkpoints"), num_train_epochs=result.epochs,
        per_device_train_batch_size=min(cfg.batch_size, len(dataset)), learning_rate=result.learning_rate,
        warmup_steps=cfg.warmup_ratio, batch_sampler=BatchSamplers.NO_DUPLICATES, seed=cfg.seed,
        prompts={k: p for k, p in (("anchor", query_prompt), ("positive", doc_prompt), ("negative", doc_prompt))
                 if p and k in dataset.column_names} or None,
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
    """The before/after table printed at the end of a run (with the untrained new-vocabulary column
    when the vocabulary was extended)."""
    mid = bool(result.extended)
    head = "| metric | base | + new vocabulary, untrained | fine-tuned | delta |" if mid else \
        "| metric | base | fine-tuned | delta |"
    lines = [head, "| --- " * (5 if mid else 4) + "|"]
    for m in KEY_METRICS:
        if m in result.before and m in result.after:
            b, a = result.before[m], result.after[m]
            ext = [f"{result.extended.get(m, 0.0):.4f}"] if mid else []
            cells = [f"{b:.4f}", *ext, f"{a:.4f}", f"{a - b:+.4f}"]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
