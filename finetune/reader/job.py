"""The `docqa finetune reader` job: data -> before figures -> training -> after figures -> the delta file
and its verdict (finetune/verdict.py: exit 3 and nothing kept when the held-out score got worse)."""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from finetune.reader.data import Question, examples, parse_spec, read_squad
from finetune.reader.train import TrainConfig, evaluate, train


@dataclass
class ReaderJob:
    encoder_dir: Path  # the e5 folder (`docqa models build`)
    train_specs: list[str]
    heldout_specs: list[str]
    out: Path  # the delta file (.safetensors) to write
    cfg: TrainConfig = field(default_factory=TrainConfig)
    init: Path | None = None  # start from this reader file (its layers and heads) instead of fresh heads
    max_train: int | None = None  # questions drawn from the training sets at most
    max_heldout: int = 1500
    command: str = ""
    kb_questions: list = field(default_factory=list)  # finetune.reader.data.kb_questions of --kb
    task: str = "reader"  # reader | verifier (docqa/reader/grounding.py: claims read against evidence windows)
    terse: float = 0.0  # share of training span questions also asked tersely (data.terse_question); reader only


def load_questions(specs: list[str], limit: int | None, rng: random.Random) -> list[Question]:
    qs: list[Question] = []
    for spec in specs:
        path, part = parse_spec(spec)
        qs += read_squad(path, part)
    rng.shuffle(qs)
    return qs[:limit] if limit else qs


def run(job: ReaderJob, log=print) -> dict:
    from docqa.reader.grounding import CLAIM_LENGTH
    from docqa.reader.net import build, load, save_delta
    from docqa.reader.windows import MAX_LENGTH, Tokens
    from finetune.reader.grounding import claim_examples, evaluate_claims

    verifier = job.task == "verifier"
    make, judge = (claim_examples, evaluate_claims) if verifier else (examples, evaluate)
    tag = f"[{job.task}]"

    rng = random.Random(job.cfg.seed)
    tok = Tokens(job.encoder_dir)
    train_q = load_questions(job.train_specs, job.max_train, rng)
    held_q = load_questions(job.heldout_specs, job.max_heldout, random.Random(job.cfg.seed + 1))
    if job.kb_questions:  # the KB's own: its documents split like a set's cases
        from finetune.reader.data import held_groups

        held = held_groups({q.group for q in job.kb_questions})
        train_q += [q for q in job.kb_questions if q.group not in held]
        held_q += [q for q in job.kb_questions if q.group in held]
    if not train_q:
        raise ValueError("no training questions: give --train files (and parts) or --kb with documents that hold "
                         "facts to ask about")
    overlap = {q.group for q in train_q} & {q.group for q in held_q}
    if overlap:
        raise ValueError(f"{len(overlap)} cases/articles are in both the training and the held-out sets "
                         f"(e.g. {sorted(overlap)[0]!r}): give disjoint parts (PATH@train and PATH@test)")
    log(f"{tag} {len(train_q)} training questions, {len(held_q)} held-out questions")
    t0 = time.perf_counter()
    train_ex = make(train_q, tok, rng, terse=job.terse) if job.terse and not verifier else make(train_q, tok, rng)
    held_ex = make(held_q, tok, random.Random(job.cfg.seed + 2))
    kinds = {k: sum(1 for e in train_ex if e.kind == k) for k in ("span", "yes", "no", "none")}
    log(f"{tag} {len(train_ex)} training windows {kinds}, {len(held_ex)} held-out windows "
        f"({time.perf_counter() - t0:.0f}s)")
    import torch

    torch.manual_seed(job.cfg.seed)
    net = load(job.encoder_dir, job.init) if job.init else build(job.encoder_dir, job.cfg.trainable)
    before = judge(net, held_ex, job.cfg.device) if held_ex else {}
    log(f"{tag} before: {_fmt(before)}")
    t1 = time.perf_counter()
    job.out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = job.out.with_name(job.out.name + ".ckpt")
    stats = train(net, train_ex, job.cfg, ckpt, log, tag=job.task)
    seconds = time.perf_counter() - t1
    after = judge(net, held_ex, job.cfg.device) if held_ex else {}
    log(f"{tag} after: {_fmt(after)}")
    meta = {"task": job.task, "terse": job.terse, "max_length": CLAIM_LENGTH if verifier else MAX_LENGTH,
            "languages": languages(train_q),
            "trained": {**stats, "seconds": round(seconds), "windows_by_kind": kinds, "device": job.cfg.device},
            "config": asdict(job.cfg), "train": job.train_specs, "heldout": job.heldout_specs,
            "before": before, "after": after, "command": job.command}
    save_delta(net, job.out, meta)
    ckpt.unlink(missing_ok=True)
    return {"before": before, "after": after, "seconds": seconds, "train_windows": len(train_ex),
            "heldout_windows": len(held_ex), "out": str(job.out)}


def languages(questions: list[Question], share: float = 0.05) -> list[str]:
    """The languages of at least ``share`` of the training questions (what the trained file can be trusted on)."""
    from collections import Counter

    from docqa.text.language import lang_of

    n = Counter(lang_of(q.question).value for q in questions)
    return sorted(k for k, v in n.items() if v >= share * max(1, len(questions)))


def _fmt(m: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
