"""`docqa finetune embed`: the click command. The job itself lives in train.py (imported when run)."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from finetune.verdict import finish, keep_worse_option


@click.command("embed")
@click.option("--pairs", "pairs_file", type=click.Path(), default=None,
              help="JSONL/JSON pairs: {query,pos,neg} (FlagEmbedding) or {anchor,positive}.")
@click.option("--kb", default=None, metavar="NAME",
              help="Make pairs from this KB's units (pseudo-queries) and mine hard negatives from its index.")
@click.option("--base-model", default=None,
              help="Model to fine-tune (HF id or dir); default: the KB's, else multilingual-e5-small.")
@click.option("--output", "output_dir", required=True, type=click.Path(), help="Output sentence-transformers dir.")
@click.option("--epochs", default=None, type=float, help="Default: 2 below 10,000 pairs, else 1.")
@click.option("--batch-size", default=32, show_default=True, type=int, help="Larger = more in-batch negatives.")
@click.option("--lr", "learning_rate", default=None, type=float,
              help="Default 2e-5, or 1e-4 when new tokens were added (their random rows must move further).")
@click.option("--loss", type=click.Choice(["mnrl", "cached-mnrl"]), default="mnrl", show_default=True,
              help="cached-mnrl: large batches on small memory.")
@click.option("--negatives/--no-negatives", default=True, show_default=True, help="Mine hard negatives (needs --kb).")
@click.option("--rank-window", default="10-100", show_default=True, help="Ranks to sample negatives from.")
@click.option("--eval-fraction", default=0.1, show_default=True, type=float, help="Held-out share for before/after.")
@click.option("--max-pairs", default=None, type=int, help="Sample at most this many pairs from the KB.")
@click.option("--max-seq-length", default=None, type=int,
              help="Truncate while training only (halves CPU cost at 128); the saved model keeps its length.")
@click.option("--extend-vocab/--no-extend-vocab", default=True, show_default=True,
              help="Add the corpus's characters the base tokenizer cannot represent ([UNK]) as new tokens "
                   "(nothing to add for an encoder that reads the language).")
@click.option("--json", "as_json", is_flag=True)
@keep_worse_option
def embed(pairs_file, kb, base_model, output_dir, epochs, batch_size, learning_rate, loss, negatives,
          rank_window, eval_fraction, max_pairs, max_seq_length, extend_vocab, as_json, keep_worse) -> None:
    """Fine-tune the embedding model on your corpus; prints held-out recall/MRR/NDCG before and after.

    Then re-embed a KB with it: docqa reindex --kb NAME --embed-model OUTPUT
    """
    from docqa.settings import load_settings
    from finetune.embed.data import load_pairs, pairs_from_kb, split_pairs
    from finetune.embed.mining import MiningConfig, mine_hard_negatives
    from finetune.embed.train import EmbedTrainConfig, LossKind, format_table, train
    from finetune.verdict import settle, snapshot

    if not pairs_file and not kb:
        raise click.UsageError("give --pairs FILE, --kb NAME, or both")
    lo, _, hi = rank_window.partition("-")
    if not (lo.isdigit() and hi.isdigit()):
        raise click.UsageError(f"--rank-window must look like 10-100, got {rank_window!r}")
    base = None
    pairs = load_pairs(pairs_file) if pairs_file else []
    corpus: list[str] | None = None
    if kb:
        from docqa.kb import KnowledgeBase

        base = KnowledgeBase.open(kb, load_settings())
        if not pairs_file:
            pairs = pairs_from_kb(base, limit=max_pairs)
        corpus = [u.embed_input(base.settings.embed)
                  for d in base.store.iter_docs() for u in base.store.units_of_doc(d.doc_id)]
    train_pairs, eval_pairs = split_pairs(pairs, eval_fraction)
    if base is not None and negatives:
        train_pairs = mine_hard_negatives(base, train_pairs, MiningConfig(rank_lo=int(lo), rank_hi=int(hi)))
    default_base = base.settings.embed_model if base else EmbedTrainConfig.base_model
    cfg = EmbedTrainConfig(base_model=base_model or default_base,
                           output_dir=output_dir, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                           loss=LossKind(loss), max_seq_length=max_seq_length, extend_vocab=extend_vocab)
    existed = snapshot(output_dir)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer's log lines: stdout keeps only the result
        result = train(cfg, train_pairs, eval_pairs, corpus)
    verdict = settle("embed", output_dir, result.before, result.after, existed=existed, keep_worse=keep_worse)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        finish(verdict)
        return
    click.echo(f"trained on {result.train_pairs} pairs ({result.epochs:g} epochs, lr {result.learning_rate:g}, "
               f"{result.added_tokens} new tokens), held out {result.eval_pairs}, {result.seconds:.0f}s -> "
               f"{result.output_dir}")
    click.echo(format_table(result))
    finish(verdict)
