"""The end of every fine-tuning job: its before/after table as JSON beside the model, and a verdict.

Users fine-tune in batch jobs, so a tuned model worse than its base on the job's main metric must not
slip through: the job says so in red, exits with status 3, and keeps what it wrote only under
``--keep-worse``. The main metric per job (``MAIN``): held-out MRR@10 for the embedding model and the
reranker, held-out pair accuracy for the NSP boundary model, held-out loss (lower is better) for the
LLM. Without a held-out split there is nothing to compare: the verdict says that and the job succeeds.

``finetune_verdict.json`` is written into the output directory; when the output is removed, beside it
(``OUT.finetune_verdict.json``), so the numbers of a rejected run are never lost. Only what the job
itself wrote is removed: files that were in the output directory before the job stay.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

EXIT_WORSE = 3
MAIN = {"embed": ("mrr@10", True), "rerank": ("mrr@10", True), "nsp": ("accuracy", True), "llm": ("eval_loss", False),
        "reader": ("score", True), "verifier": ("score", True)}
FILE = "finetune_verdict.json"


@dataclass
class Verdict:
    job: str
    metric: str
    higher_is_better: bool
    before: float | None
    after: float | None
    table: dict = field(default_factory=dict)  # every metric: {"before": {...}, "after": {...}}
    kept: bool = True
    report: str = ""  # where the JSON was written

    @property
    def compared(self) -> bool:
        return self.before is not None and self.after is not None

    @property
    def worse(self) -> bool:
        """Strictly worse on the main metric (a NaN after training is worse)."""
        if not self.compared:
            return False
        if math.isnan(self.after):
            return True
        return self.after < self.before if self.higher_is_better else self.after > self.before

    @property
    def exit_code(self) -> int:
        return EXIT_WORSE if self.worse else 0

    def message(self) -> str:
        if not self.compared:
            return f"{self.job}: no held-out numbers, so no before/after verdict (give a held-out split)"
        arrow = f"{self.metric} {self.before:.4f} -> {self.after:.4f}"
        if not self.worse:
            return f"{self.job}: held-out {arrow}: better than or equal to the base"
        fate = ("kept because of --keep-worse" if self.kept else
                "removed (rerun with --keep-worse to keep it)")
        return f"{self.job}: the tuned model is WORSE than its base on held-out {arrow}; output {fate}"


def snapshot(out: str | Path) -> set[str] | None:
    """What the output directory holds before a job writes into it (None: it does not exist yet)."""
    out = Path(out)
    return {p.name for p in out.iterdir()} if out.is_dir() else None


def settle(job: str, out: str | Path, before: dict, after: dict, *, existed: set[str] | None,
           keep_worse: bool) -> Verdict:
    """Compare ``before`` and ``after`` on the job's main metric, write the JSON, remove a worse output
    unless ``keep_worse``. ``existed``: ``snapshot(out)`` taken before the job ran."""
    metric, higher = MAIN[job]
    out = Path(out)
    v = Verdict(job=job, metric=metric, higher_is_better=higher, before=_num(before.get(metric)),
                after=_num(after.get(metric)), table={"before": before, "after": after})
    if v.worse and not keep_worse:
        _remove_new(out, existed)
        v.kept = False
    target = out / FILE if out.is_dir() else out.with_name(out.name + "." + FILE)
    v.report = str(target)
    target.write_text(json.dumps({**asdict(v), "worse": v.worse}, ensure_ascii=False, indent=2, default=str),
                      encoding="utf-8")
    return v


keep_worse_option = click.option(
    "--keep-worse", is_flag=True,
    help="Keep the output even when the tuned model is worse than its base on the held-out main metric (the job "
         "still exits with status 3).")


def finish(v: Verdict) -> None:
    """Print the verdict (red when worse) and exit with status 3 when the tuned model is worse."""
    echo(v)
    if v.exit_code:
        raise SystemExit(v.exit_code)


def echo(v: Verdict) -> None:
    """The verdict on stderr, in red when the tuned model is worse."""
    click.echo(click.style(v.message(), fg="red", bold=True) if v.worse else v.message(), err=True)


def _num(x) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def _remove_new(out: Path, existed: set[str] | None) -> None:
    if not out.exists():
        return
    if existed is None:  # the job made the directory: all of it is the job's
        shutil.rmtree(out)
        return
    for p in out.iterdir():
        if p.name not in existed:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
