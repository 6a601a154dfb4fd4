"""``docqa eval make | run | calibrate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _kb(name: str):
    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings

    return KnowledgeBase.open(name, load_settings())


@click.group(name="eval")
def eval_group() -> None:
    """Measure a knowledge base on a question set: retrieval, answers, citations, refusals, latency."""


@eval_group.command()
@click.option("--kb", required=True, metavar="NAME")
@click.option("--n", "n", default=200, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSONL file to write.")
@click.option("--holdout", multiple=True, type=click.Path(exists=True),
              help="Documents NOT in the KB: their facts become unanswerable questions (repeatable).")
@click.option("--unanswerable-share", default=0.3, show_default=True, type=click.FloatRange(0, 1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-llm", is_flag=True, help="Rule-made questions even when an LLM is configured.")
def make(kb: str, n: int, out: str, holdout: tuple[str, ...], unanswerable_share: float, seed: int,
         no_llm: bool) -> None:
    """Build an eval set from the KB itself (see service/evaluation/make.py for what each kind measures)."""
    from service.evaluation.dataset import write_eval_set
    from service.evaluation.make import make_eval_set
    from service.llm import kb_llm_settings, llm_for

    base = _kb(kb)
    llm = None if no_llm else llm_for(kb_llm_settings(base.settings, base.name))
    rows, notes = make_eval_set(base, n, holdout=[Path(h) for h in holdout], unanswerable_share=unanswerable_share,
                                seed=seed, llm=llm)
    path = write_eval_set(rows, out)
    unans = sum(r.unanswerable for r in rows)
    click.echo(f"wrote {len(rows)} questions ({len(rows) - unans} answerable, {unans} unanswerable) to {path}"
               + (" with questions written by the LLM" if llm is not None else ""))
    for note in notes:
        click.echo(f"note: {note}", err=True)


@eval_group.command()
@click.option("--kb", required=True, metavar="NAME")
@click.option("--qa", required=True, type=click.Path(exists=True, dir_okay=False), help="Eval set (JSONL).")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Output folder (default: eval-<kb>).")
@click.option("--baseline", default=None, type=click.Path(exists=True),
              help="metrics.json of an earlier run (or its folder): exit 3 when a main metric falls further "
                   "than --tolerance.")
@click.option("--tolerance", default=0.01, show_default=True, type=click.FloatRange(0, 1))
@click.option("--set", "sweep", default=None, metavar="KEY=V1,V2,...", help="Run once per value of a numeric setting.")
@click.option("--resume", is_flag=True, help="Keep the rows an interrupted run wrote and continue.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-progress", is_flag=True)
def run(kb: str, qa: str, out: str | None, baseline: str | None, tolerance: float, sweep: str | None, resume: bool,
        as_json: bool, no_progress: bool) -> None:
    """Run every question through the answering pipeline and write metrics.json, report.md, plots and rows.jsonl."""
    from service.evaluation.dataset import load_eval_set
    from service.evaluation.report import metric_table
    from service.evaluation.runner import evaluate, parse_sweep

    evalset = load_eval_set(qa)
    base = json.loads(_metrics_path(baseline).read_text(encoding="utf-8")) if baseline else None
    out_dir = Path(out or f"eval-{kb}")
    result = evaluate(_kb(kb), evalset, out_dir, baseline=base, tolerance=tolerance, sweep=parse_sweep(sweep),
                      resume=resume, progress=not no_progress and sys.stderr.isatty())
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        click.echo(metric_table(result["metrics"], base))
        click.echo(f"report: {result['report']}")
    for note in result["notes"]:
        click.echo(f"note: {note}", err=True)
    for n, why in evalset.skipped[:20]:
        click.echo(f"  skipped line {n}: {why}", err=True)
    if result["regressions"]:
        click.echo(f"regression beyond {tolerance}: {', '.join(result['regressions'])}", err=True)
        sys.exit(3)


def _metrics_path(p: str) -> Path:
    path = Path(p)
    return path / "metrics.json" if path.is_dir() else path


@eval_group.command()
@click.option("--kb", required=True, metavar="NAME")
@click.option("--qa", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", default=None, type=click.Path(file_okay=False))
@click.option("--dry-run", is_flag=True, help="Say what would be chosen; write nothing to the KB.")
@click.option("--no-progress", is_flag=True)
def calibrate(kb: str, qa: str, out: str | None, dry_run: bool, no_progress: bool) -> None:
    """Choose the KB's refusal threshold from its own questions (balanced accuracy) and store it in the KB."""
    from docqa.kb.writer import store_tuned
    from docqa.settings import load_settings
    from service.evaluation.calibrate import balanced_accuracy, choose_threshold, threshold_for
    from service.evaluation.dataset import load_eval_set
    from service.evaluation.runner import evaluate

    base = _kb(kb)
    # every window the reader may read, in one step: each question's score is then the best P(answer) over all of
    # them, and reading two first (service/answering/reading.py) answers exactly when that score reaches the
    # threshold, whichever is chosen (scores from the first two alone undercount above the threshold it runs at)
    view = base.with_settings({"reader_windows_first": base.settings.reader_windows})
    result = evaluate(view, load_eval_set(qa), Path(out or f"eval-{kb}-calibrate"),
                      progress=not no_progress and sys.stderr.isatty())
    records = [json.loads(line) for line in Path(result["report"]).with_name("rows.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    key, records = threshold_for(records)
    old = getattr(base.settings, key)
    new, (ba, answered, refused) = choose_threshold(records)
    ba_old, ans_old, ref_old = balanced_accuracy(records, old)
    why = (f"balanced accuracy of answering the {result['metrics']['answerable']} answerable and refusing the "
           f"{result['metrics']['unanswerable']} unanswerable questions of {Path(qa).name}")
    click.echo(f"{key} {old:.4f} -> {new:.4f}: balanced accuracy {ba_old:.3f} -> {ba:.3f} "
               f"(answerable answered {ans_old:.3f} -> {answered:.3f}, unanswerable refused {ref_old:.3f} -> "
               f"{refused:.3f})")
    click.echo(f"optimised: {why}")
    if dry_run:
        click.echo("dry run: nothing written")
        return
    store_tuned(kb, load_settings(), {key: new}, f"docqa eval calibrate: {why}")
    click.echo(f"stored in {kb}'s manifest (an explicit {key} in docqa.yaml or DOCQA_* still wins)")
