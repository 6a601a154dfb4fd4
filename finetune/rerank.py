"""`docqa finetune rerank`: a cross-encoder reranker trained from the KB's own encoder.

The model is a sentence-transformers ``CrossEncoder`` initialised from ``--base`` (an encoder such as
multilingual-e5-small gets a fresh one-logit head; an HF cross-encoder is fine-tuned as it is), trained
on each query's positive against its own hard negatives with softmax cross-entropy over the group
(localized contrastive estimation, Gao et al. 2021; ``--loss bce``: binary cross-entropy on
(query, positive) = 1 and (query, hard negative) = 0 rows). Queries, positives and negatives come
from the KB exactly as for ``finetune embed`` (``finetune.embed.data`` and ``mining``: the same
pseudo-queries or LLM questions, the same false-negative guards; by default from ranks 1-30, the
candidates the reranker will reorder), or from a pairs file.

Held-out queries (``HeldOut``) are measured the way they will be served. With ``--kb``: the passages the
KB's own search returns for the query (its ``rerank_top_n``, in the order the user gets today), the
ones in the positive's section or holding it counting as relevant. **Before** is that order itself (no
reranker, or the KB's current one), **after** the trained reranker's order of the same candidates, so a
reranker that would make answers worse is reported as worse. With ``--pairs`` alone there is no serving
order: before is the base's own ranking of positives and negatives (a cross-encoder base: its scores;
an encoder base: its bi-encoder similarity, what retrieval alone would do). Recall@1/5 and MRR@10; the
verdict (``finetune.verdict``) compares MRR@10.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from docqa.errors import UserError
from finetune.embed.data import Pair


@dataclass
class RerankConfig:
    base: str
    output_dir: str
    epochs: float = 1.0
    batch_size: int = 16  # passages per step (LCE: groups of 1 + n negatives, as many as fit)
    learning_rate: float = 5e-5  # a fresh head: 3e-5 for an epoch left BCE near the label prior (first bench run)
    max_length: int = 256
    warmup_ratio: float = 0.1  # of the steps (transformers 5 takes a ratio as a float warmup_steps)
    # "lce": each query's positive against its own hard negatives, softmax cross-entropy over the group
    # (localized contrastive estimation, Gao et al. 2021: the ranking a reranker is for); "bce": every
    # (query, passage) row labelled 1/0 on its own.
    loss: str = "lce"
    seed: int = 0
    device: str = "auto"
    progress: bool = True


@dataclass
class HeldOut:
    """One held-out query: the candidates a reranker reorders, in the order the user gets without it
    (the KB's search order; a pairs file: positives then negatives, unordered), and which answer it."""

    query: str
    texts: list[str]
    relevant: list[bool]


@dataclass
class RerankResult:
    output_dir: str
    train_rows: int
    eval_queries: int
    baseline: str = ""  # what "before" measures
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def load_cross_encoder(base: str, max_length: int, device: str = "auto"):
    from sentence_transformers import CrossEncoder
    from transformers.utils import logging as hf_logging

    from docqa.models.embedder import pick_device, resolve_model_path

    hf_logging.set_verbosity_error()  # "newly initialized classifier" is the point for an encoder base
    try:
        return CrossEncoder(resolve_model_path(base), num_labels=1, max_length=max_length, device=pick_device(device))
    except (OSError, ValueError) as e:
        raise UserError(f"base {base!r} could not be loaded as a cross-encoder ({type(e).__name__}): give a local "
                         "encoder or cross-encoder directory, or an HF id in the local cache") from None


def held_out_from_kb(kb, pairs: list[Pair], top_n: int | None = None) -> list[HeldOut]:
    """Each pair's query against what the KB serves for it: its search's top ``top_n`` (the KB's
    ``rerank_top_n``), in that order; relevant = in the positive's section or holding the positive."""
    from docqa.search import search
    from finetune.embed.data import _progress
    from finetune.embed.mining import overlaps, same_section

    n = top_n or kb.settings.rerank_top_n
    out = []
    for p in _progress(pairs, "held-out candidates"):
        hits = search(kb, p.query, k=n)
        out.append(HeldOut(p.query, [h.text for h in hits],
                           [same_section(p, h) or overlaps(p, h.text) for h in hits]))
    return out


def held_out_from_pairs(pairs: list[Pair]) -> list[HeldOut]:
    """Positives and negatives of each pair that has negatives (nothing to rank otherwise)."""
    return [HeldOut(p.query, [*p.pos, *p.neg], [True] * len(p.pos) + [False] * len(p.neg)) for p in pairs if p.neg]


def rank_of(relevant: list[bool], scores=None) -> int | None:
    """Rank of the best relevant candidate: in the given order, or by ``scores`` (ties count against
    it, so a model that scores everything alike gains nothing). None when no candidate is relevant."""
    if not any(relevant):
        return None
    if scores is None:
        return relevant.index(True) + 1
    best = max(float(s) for s, r in zip(scores, relevant, strict=True) if r)
    return 1 + sum(1 for s, r in zip(scores, relevant, strict=True) if not r and float(s) >= best)


def metrics_of(ranks: list[int | None]) -> dict[str, float]:
    """Recall@1/5, MRR@10 over all queries (one with no relevant candidate is a miss for every
    ranking) and the share of queries with a relevant candidate at all."""
    if not ranks:
        return {}
    n = len(ranks)
    hit = [r for r in ranks if r is not None]
    return {"queries": n, "recall@1": round(sum(r == 1 for r in hit) / n, 4),
            "recall@5": round(sum(r <= 5 for r in hit) / n, 4),
            "mrr@10": round(sum(1 / r for r in hit if r <= 10) / n, 4),
            "answer_in_candidates": round(len(hit) / n, 4)}


def rank_metrics(model, held: list[HeldOut]) -> dict[str, float]:
    """The cross-encoder's ranking of each held-out query's candidates (scored as serving scores them)."""
    from docqa.models.rerank import relevance

    return metrics_of([rank_of(h.relevant, relevance(model, h.query, h.texts)) for h in held])


def is_cross_encoder(model) -> bool:
    """The loaded base already has a trained relevance head (an HF cross-encoder), not a fresh one."""
    return any(a.endswith("ForSequenceClassification") for a in (model.model.config.architectures or []))


def baseline(model, base: str, held: list[HeldOut], *, served_order: bool, device: str = "auto") -> tuple[str, dict]:
    """What the user has without this reranker (see the module docstring): (description, metrics)."""
    if served_order:
        return "the KB's search order (what is served today)", metrics_of([rank_of(h.relevant) for h in held])
    if is_cross_encoder(model):
        return f"the base cross-encoder {base}", rank_metrics(model, held)
    from docqa.models.embedder import Embedder

    emb = Embedder(base, device=device)
    ranks = []
    for h in held:
        q = emb.encode_queries([h.query])[0]
        ranks.append(rank_of(h.relevant, (emb.encode_docs(h.texts) @ q).tolist() if h.texts else []))
    return f"the base encoder's similarity ({base} as a bi-encoder)", metrics_of(ranks)


def training_rows(pairs: list[Pair]) -> dict[str, list]:
    """BCE rows: (query, positive) = 1, (query, each negative) = 0."""
    rows: dict[str, list] = {"query": [], "passage": [], "label": []}
    for p in pairs:
        for text, label in [(p.pos[0], 1.0), *((n, 0.0) for n in p.neg)]:
            rows["query"].append(p.query)
            rows["passage"].append(text)
            rows["label"].append(label)
    return rows


def group_rows(pairs: list[Pair]) -> dict[str, list]:
    """LCE groups: query, positive, negative_1..n, one row per pair. Every row needs the same n: the
    number of negatives most pairs have; a pair with fewer is left out, one with more gives its first n."""
    from collections import Counter

    have = Counter(len(p.neg) for p in pairs if p.neg)
    if not have:
        return {}
    n = max(have, key=lambda k: (have[k], -k))
    kept = [p for p in pairs if len(p.neg) >= n]
    rows: dict[str, list] = {"query": [p.query for p in kept], "positive": [p.pos[0] for p in kept]}
    for i in range(n):
        rows[f"negative_{i + 1}"] = [p.neg[i] for p in kept]
    return rows


def train(cfg: RerankConfig, train_pairs: list[Pair], held: list[HeldOut], *,
          served_order: bool = False) -> RerankResult:
    """Measure the baseline, train, measure, save (see the module docstring). ``served_order``: the
    held-out candidates are in the order the KB serves them (``held_out_from_kb``)."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    t0 = time.perf_counter()
    if cfg.loss not in ("lce", "bce"):
        raise UserError(f"loss must be lce or bce, got {cfg.loss!r}")
    if not any(p.neg for p in train_pairs):
        raise UserError("no negatives to train on: mine them from a KB (--kb) or give pairs with \"neg\"")
    model = load_cross_encoder(cfg.base, cfg.max_length, cfg.device)
    result = RerankResult(output_dir=cfg.output_dir, train_rows=0, eval_queries=len(held))
    result.baseline, result.before = baseline(model, cfg.base, held, served_order=served_order, device=cfg.device)
    rows = group_rows(train_pairs) if cfg.loss == "lce" else training_rows(train_pairs)
    result.train_rows = len(rows["query"])
    loss = _lce_loss(model) if cfg.loss == "lce" else BinaryCrossEntropyLoss(model)
    per_step = max(1, cfg.batch_size // (len(rows) - 1)) if cfg.loss == "lce" else cfg.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        args = CrossEncoderTrainingArguments(
            output_dir=tmp, num_train_epochs=cfg.epochs, per_device_train_batch_size=per_step,
            learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_ratio, save_strategy="no", report_to=[],
            seed=cfg.seed, disable_tqdm=not cfg.progress, logging_steps=50,
            use_cpu=str(model.device) == "cpu")
        CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows),
                            loss=loss).train()
    result.after = rank_metrics(model, held)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    result.seconds = round(time.perf_counter() - t0, 1)
    (out / "finetune_metrics.json").write_text(json.dumps({"recipe": asdict(cfg), **result.to_dict()},
                                                          ensure_ascii=False, indent=2), encoding="utf-8")
    return result


def _lce_loss(model):
    """Softmax cross-entropy of each query's raw scores over (positive, its negatives): the framework's
    ranking loss without its random in-batch negatives (the candidates a reranker sees are hard ones)."""
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    class LocalizedContrastiveLoss(MultipleNegativesRankingLoss):
        def get_in_batch_negatives(self, anchors, candidates):
            return iter(())

    return LocalizedContrastiveLoss(model, num_negatives=None, scale=1.0, activation_fn=None)


def format_table(result: RerankResult) -> str:
    keys = [k for k in ("recall@1", "recall@5", "mrr@10") if k in result.before and k in result.after]
    lines = [f"before: {result.baseline}", f"{'held-out':<10} {'before':>8} {'after':>8}"]
    lines += [f"{k:<10} {result.before[k]:>8.4f} {result.after[k]:>8.4f}" for k in keys]
    return "\n".join(lines)
