"""`docqa finetune ...`: training jobs. Each sub-command imports its job module only when run."""

from __future__ import annotations

import click

from .verdict import finish, keep_worse_option


@click.group()
def finetune() -> None:
    """Train models on your own corpus: boundary (NSP) model, embedding model, LLM (LoRA)."""


def _add_training_jobs() -> None:
    """`embed`, `llm`, `build-rag-sft`, `merge` (their modules import only click at this point)."""
    from .embed.cli import embed
    from .llm.cli import build_rag_sft, llm, merge

    for cmd in (embed, llm, build_rag_sft, merge):
        finetune.add_command(cmd)


_add_training_jobs()


@finetune.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--kb", default=None, metavar="NAME", help="Train on the stored text of this knowledge base.")
@click.option("--files", "files", multiple=True, type=click.Path(), help="Files or folders to train on (repeatable; "
              "extra PATHS arguments are added too).")
@click.option("--base", required=True, metavar="ENCODER", help="BERT encoder to start from: HF id or local dir "
              "(e.g. sentence-transformers/all-MiniLM-L6-v2, bert-base-chinese).")
@click.option("--out", required=True, type=click.Path(), help="Directory for the BertForNextSentencePrediction model.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(16, 512))
@click.option("--lr", default=5e-5, show_default=True, type=float)
@click.option("--hard-fraction", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Share of negatives taken from the same document (harder, closer to real boundaries).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@keep_worse_option
def nsp(paths: tuple[str, ...], kb: str | None, files: tuple[str, ...], base: str, out: str, steps: int,
        batch_size: int, max_length: int, lr: float, hard_fraction: float, seed: int, as_json: bool,
        keep_worse: bool) -> None:
    """Train the NSP boundary model for `chunker: nsp` from your own documents (self-supervised).

    Adjacent text in a section is a positive pair; text from another document, or from far away in
    the same one, a negative. Prints held-out accuracy; then set `nsp_model: OUT` and run
    `docqa reindex --kb NAME --chunker nsp --nsp-model OUT`.
    """
    import contextlib
    import json
    import sys
    from pathlib import Path

    from .nsp import NSPConfig, load_documents, train
    from .verdict import settle, snapshot

    all_files = [*files, *paths]
    if not kb and not all_files:
        raise click.UsageError("give --kb NAME or --files PATH (or both)")
    docs, failures = load_documents(kb, all_files)
    for f in failures:
        click.echo(f"  skipped: {f}", err=True)
    cfg = NSPConfig(base=base, out=Path(out), steps=steps, batch_size=batch_size, max_length=max_length, lr=lr,
                    hard_fraction=hard_fraction, seed=seed, progress=sys.stderr.isatty())
    existed = snapshot(out)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer's log lines: stdout keeps only the result
            r = train(docs, cfg)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    verdict = settle("nsp", out, {"accuracy": r.accuracy_before}, {"accuracy": r.accuracy, **r.accuracy_by_kind},
                     existed=existed, keep_worse=keep_worse)
    if as_json:
        click.echo(json.dumps(r.__dict__, ensure_ascii=False, indent=2))
        finish(verdict)
        return
    kinds = ", ".join(f"{k} {v:.3f}" for k, v in r.accuracy_by_kind.items())
    click.echo(f"NSP model -> {r.out}: held-out accuracy {r.accuracy:.3f} (before training {r.accuracy_before:.3f}; "
               f"{kinds}) on {r.eval_examples} pairs from {r.eval_docs} documents; trained on {r.train_examples} "
               f"pairs from {r.train_docs} documents in {r.seconds:.0f}s"
               + (f"; {r.added_tokens} characters added to the vocabulary" if r.added_tokens else ""))
    finish(verdict)
