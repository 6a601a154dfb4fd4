"""`docqa finetune reader`: train the reader's top encoder layers and heads (docqa/reader/net.py).

The lower layers are frozen and run without gradients, so a CPU trains the reader in hours: measured on
2 cores, ~10 windows/s at 192 tokens with 4 trainable layers. Training is resumable: every
``checkpoint_every`` steps the trainable weights, the optimiser and the step go to ``OUT.ckpt``; a rerun
of the same command continues from there (the example order is fixed by the seed).

Held-out figures (before = the starting model, after = the trained one), on windows built the way
serving builds them: span EM / F1 on windows that hold the answer, answerability balanced accuracy
over all windows (answer when P(none) < .5), yes/no accuracy; main metric ``score`` = mean of F1 and
balanced accuracy.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docqa.reader.metrics import balanced_accuracy, exact, f1
from docqa.reader.net import KINDS
from docqa.reader.windows import batch
from finetune.reader.data import Example


@dataclass
class TrainConfig:
    trainable: int = 4
    batch_size: int = 16
    lr: float = 1e-4
    head_lr: float = 1e-3
    epochs: float = 1.0
    seed: int = 7
    checkpoint_every: int = 100
    device: str = "cpu"


def _tensors(exs: list[Example], device: str):
    import torch

    ids, mask = batch([e.window for e in exs])
    kind = torch.tensor([KINDS.index(e.kind) for e in exs])
    start = torch.tensor([e.start for e in exs])
    end = torch.tensor([e.end for e in exs])
    # positions a span may start/end at: the window's passage tokens
    allowed = torch.zeros(ids.shape, dtype=torch.bool)
    for i, e in enumerate(exs):
        allowed[i, e.window.first:e.window.last + 1] = True
    return (torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device), kind.to(device), start.to(device),
            end.to(device), allowed.to(device))


def loss_of(net, exs: list[Example], device: str):
    import torch
    import torch.nn.functional as F

    ids, mask, kind, start, end, allowed = _tensors(exs, device)
    s_log, e_log, k_log = net(ids, mask)
    loss = F.cross_entropy(k_log, kind)
    is_span = start > 0  # windows with a gold span (the reader's span kind; the verifier's claims too)
    if is_span.any():
        neg = torch.finfo(s_log.dtype).min
        s_log = s_log.masked_fill(~allowed, neg)[is_span]
        e_log = e_log.masked_fill(~allowed, neg)[is_span]
        loss = loss + 0.5 * (F.cross_entropy(s_log, start[is_span]) + F.cross_entropy(e_log, end[is_span]))
    return loss


def batches(exs: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled batches of windows of similar length (little padding)."""
    order = exs[:]
    rng.shuffle(order)
    out = []
    chunk = size * 50
    for i in range(0, len(order), chunk):
        part = sorted(order[i:i + chunk], key=lambda e: len(e.window.ids))
        out += [part[j:j + size] for j in range(0, len(part), size)]
    rng.shuffle(out)
    return out


def train(net, exs: list[Example], cfg: TrainConfig, ckpt: Path | None = None, log=print,
          max_steps: int | None = None, tag: str = "reader") -> dict:
    """Train ``net`` on ``exs``; with ``ckpt``, resume from it and checkpoint into it. ``max_steps``: stop
    after this many steps of the plan (a time-boxed run; the same command later goes on from there)."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    plan = []
    for ep in range(math.ceil(cfg.epochs)):
        bs = batches(exs, cfg.batch_size, rng)
        if ep + 1 > cfg.epochs:  # a fractional last epoch
            bs = bs[:int(len(bs) * (cfg.epochs - ep))]
        plan += bs
    total = len(plan)
    heads = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("bert.")]
    body = [p for n, p in net.named_parameters() if p.requires_grad and n.startswith("bert.")]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr}, {"params": heads, "lr": cfg.head_lr}],
                            weight_decay=0.01)
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / max(1, total - warm)))
    step = 0
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        if state.get("total") == total:
            net.load_state_dict(state["model"], strict=False)
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            step = state["step"]
            torch.set_rng_state(state["rng"])  # dropout as the uninterrupted run would draw it
            log(f"[{tag}] resuming at step {step} of {total} from {ckpt}")
    net.train()
    net.to(cfg.device)
    t0, seen, losses = time.perf_counter(), 0, []
    stop = total if max_steps is None else min(total, max_steps)
    while step < stop:
        exs_b = plan[step]
        loss = loss_of(net, exs_b, cfg.device)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(body + heads, 1.0)
        opt.step()
        sched.step()
        step += 1
        seen += len(exs_b)
        losses.append(float(loss.detach()))
        if step % 20 == 0 or step == total:
            rate = seen / (time.perf_counter() - t0)
            eta = (total - step) * cfg.batch_size / max(rate, 1e-9)
            log(f"[{tag}] step {step}/{total} loss {np.mean(losses[-20:]):.3f} {rate:.1f} windows/s "
                f"eta {eta / 60:.0f} min")
        if ckpt is not None and (step % cfg.checkpoint_every == 0 or step == total):
            trainable = {k: v for k, v in net.state_dict().items()
                         if any(k == n for n, p in net.named_parameters() if p.requires_grad)}
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": trainable, "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                        "total": total, "rng": torch.get_rng_state()}, tmp)
            tmp.replace(ckpt)
    net.eval()
    return {"steps": step, "of": total, "windows": seen, "final_loss": float(np.mean(losses[-50:])) if losses else None}


def predict(net, exs: list[Example], device: str = "cpu", batch_size: int = 32):
    """(start, end, kind) logits of each example's window, as numpy arrays per example."""
    import torch

    out = []
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(exs), batch_size):
            part = exs[i:i + batch_size]
            ids, mask, *_ = _tensors(part, device)
            s, e, k = net(ids, mask)
            for j in range(len(part)):
                out.append((s[j].float().cpu().numpy(), e[j].float().cpu().numpy(), k[j].float().cpu().numpy()))
    return out


def evaluate(net, exs: list[Example], device: str = "cpu") -> dict:
    """Held-out figures on windows (see the module docstring)."""
    from docqa.reader.decode import read_window

    if not exs:
        return {}
    ems, f1s, yn, truth, said = [], [], [], [], []
    for e, (s, en, k) in zip(exs, predict(net, exs, device), strict=True):
        r = read_window(s, en, k, e.window, 0)
        truth.append(e.kind != "none")
        said.append(r.p_answer >= 0.5)
        if e.kind == "span":
            pred = e.q.context[r.start:r.end] if r.kind == "span" else ""
            golds = [t for _, t in e.q.answers]
            ems.append(exact(pred, golds))
            f1s.append(f1(pred, golds))
        elif e.kind in ("yes", "no"):
            yn.append(float(r.kind == e.kind))
    bal = balanced_accuracy(truth, said)
    out = {"windows": len(exs), "span_em": _mean(ems), "span_f1": _mean(f1s), "yes_no_accuracy": _mean(yn),
           "answerability_balanced_accuracy": bal}
    parts = [x for x in (out["span_f1"], bal) if x is not None]
    out["score"] = float(np.mean(parts)) if parts else None
    return out


def _mean(xs):
    return float(np.mean(xs)) if xs else None


def dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - `docqa finetune reader` is the entry point
    sys.exit("run `docqa finetune reader`")
