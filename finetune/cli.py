"""`docqa finetune ...`: training jobs. Each sub-command imports its job module only when run."""

from __future__ import annotations

from pathlib import Path

import click

from docqa.errors import UserError
from finetune.verdict import finish, keep_worse_option


@click.group()
def finetune() -> None:
    """Train models on your own corpus: boundary (NSP) model, embedding model, LLM (LoRA)."""


def _add_training_jobs() -> None:
    """`embed`, `llm`, `build-rag-sft`, `merge` (their modules import only click at this point)."""
    from finetune.embed.cli import embed
    from finetune.llm.cli import build_rag_sft, llm, merge

    for cmd in (embed, llm, build_rag_sft, merge):
        finetune.add_command(cmd)


_add_training_jobs()


@finetune.command()
@click.option("--clean", "clean", multiple=True, required=True, metavar="PATH[@even|@odd]",
              help="Text the check must pass (your own documents): .md .txt .html, JSON or JSONL. Repeatable.")
@click.option("--dir", "directory", default=None, type=click.Path(file_okay=False),
              help="Compliance directory with claims.yaml; the model is written there (default: compliance_dir).")
@click.option("--encoder", default=None, help="Encoder (default: the embed_model setting).")
@click.option("--seed", default=13, show_default=True)
@click.option("--max-false", default=0.002, show_default=True, help="Held-out false-flag rate the threshold allows.")
@click.option("--clean-limit", default=8000, show_default=True, help="Clean sentences and clauses used at most.")
@click.option("--source", "sources", multiple=True, metavar="SET=LICENSE",
              help="Data set and its license, for the model card (repeatable).")
def claims(clean, directory, encoder, seed, max_false, clean_limit, sources) -> None:
    """Train the claim check (paraphrases of forbidden claims) from claims.yaml and clean text."""
    import shlex
    import sys as _sys
    from pathlib import Path

    from docqa.screening import compliance_dir
    from docqa.settings import load_settings
    from finetune.claims import train_claims, write_card

    settings = load_settings()
    where = Path(directory) if directory else compliance_dir(settings)
    if not (where / "claims.yaml").is_file():
        raise UserError(f"{where} has no claims.yaml: write the forbidden claims there first")
    command = "docqa finetune claims " + shlex.join(_sys.argv[3:] if len(_sys.argv) > 3 else [])
    card = train_claims(where, list(clean), encoder=encoder or settings.embed_model,
                        backend=getattr(settings.embed_backend, "value", settings.embed_backend),
                        device=settings.device, seed=seed, clean_limit=clean_limit, max_false=max_false,
                        command=command)
    write_card(where, card, dict(s.split("=", 1) for s in sources if "=" in s))
    h = card["figures"]["held_out"]
    per = ", ".join(f"{k} {v:.4f}" for k, v in card["figures"]["thresholds"].items())
    click.echo(f"threshold {card['figures']['threshold']:.4f} ({per}); held out: claims caught "
               f"{h['claims_caught']:.1%} of {h['n_claims']}, fine flagged {h['fine_flagged']:.1%} of {h['n_fine']}, "
               "clean flagged "
               f"{h['clean_flagged']:.2%} of {h['n_clean']}; wrote {where / 'claims_model.json'}")


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

    from finetune.nsp import NSPConfig, load_documents, train
    from finetune.verdict import settle, snapshot

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
    except UserError as e:
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


@finetune.command()
@click.option("--kb", default=None, metavar="NAME", help="Mine queries, positives and hard negatives from this KB.")
@click.option("--pairs", "pairs_file", type=click.Path(), default=None,
              help="JSONL of {\"query\", \"pos\": [...], \"neg\": [...]} (or anchor/positive/negative).")
@click.option("--base", default=None, metavar="ENCODER",
              help="Encoder or cross-encoder to start from (HF id or dir); default: the KB's embedding model.")
@click.option("--output", "output_dir", required=True, type=click.Path(), help="Output CrossEncoder directory.")
@click.option("--epochs", default=1.0, show_default=True, type=float)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option("--lr", "learning_rate", default=5e-5, show_default=True, type=float)
@click.option("--max-length", default=256, show_default=True, type=click.IntRange(16, 512))
@click.option("--negatives", default=3, show_default=True, type=click.IntRange(1, 32),
              help="Hard negatives mined per training query (--kb).")
@click.option("--rank-window", default="0-30", show_default=True,
              help="Ranks to mine training negatives from: those the reranker will reorder (guards as for embed).")
@click.option("--loss", default="lce", show_default=True, type=click.Choice(["lce", "bce"]),
              help="lce: softmax over each query's positive and its negatives; bce: each passage labelled 1/0.")
@click.option("--eval-fraction", default=0.1, show_default=True, type=float, help="Held-out share for before/after.")
@click.option("--max-pairs", default=None, type=int, help="Sample at most this many queries from the KB.")
@click.option("--json", "as_json", is_flag=True)
@keep_worse_option
def rerank(kb, pairs_file, base, output_dir, epochs, batch_size, learning_rate, max_length, negatives, rank_window,
           loss, eval_fraction, max_pairs, as_json, keep_worse) -> None:
    """Train a cross-encoder reranker (set `rerank_model: OUTPUT`); prints held-out recall@1/5 and MRR@10
    before and after. With --kb, held-out queries rerank what the KB's search returns for them and
    "before" is the order served today: a reranker that would make answers worse exits with status 3."""
    import contextlib
    import json
    import sys

    from finetune.embed.data import load_pairs, pairs_from_kb, split_pairs
    from finetune.embed.mining import MiningConfig, mine_hard_negatives
    from finetune.rerank import RerankConfig, format_table, held_out_from_kb, held_out_from_pairs, train
    from finetune.verdict import settle, snapshot

    if not pairs_file and not kb:
        raise click.UsageError("give --kb NAME, --pairs FILE, or both")
    lo, _, hi = rank_window.partition("-")
    if not (lo.isdigit() and hi.isdigit()):
        raise click.UsageError(f"--rank-window must look like 10-100, got {rank_window!r}")
    pairs = load_pairs(pairs_file) if pairs_file else []
    kbase = None
    if kb:
        from docqa.kb import KnowledgeBase
        from docqa.settings import load_settings

        kbase = KnowledgeBase.open(kb, load_settings())
        if not pairs_file:
            pairs = pairs_from_kb(kbase, limit=max_pairs)
    train_pairs, eval_pairs = split_pairs(pairs, eval_fraction)
    if kbase is not None:  # the same miner and guards as `finetune embed`; held out: what serving reranks
        train_pairs = mine_hard_negatives(kbase, train_pairs, MiningConfig(rank_lo=int(lo), rank_hi=int(hi),
                                                                           per_query=negatives))
        if not any(p.neg for p in train_pairs):
            raise click.ClickException(f"no hard negatives in ranks {rank_window} of the KB's search for any training "
                                       "query: on a small KB give a lower window, e.g. --rank-window 0-50")
        held = held_out_from_kb(kbase, eval_pairs)
    else:
        held = held_out_from_pairs(eval_pairs)
    if not (base or kbase):
        raise click.UsageError("give --base (with --pairs alone there is no KB model to start from)")
    cfg = RerankConfig(base=base or kbase.settings.embed_model, output_dir=output_dir, epochs=epochs,
                       batch_size=batch_size, learning_rate=learning_rate, max_length=max_length, loss=loss,
                       progress=sys.stderr.isatty())
    existed = snapshot(output_dir)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer's log lines: stdout keeps only the result
            result = train(cfg, train_pairs, held, served_order=kbase is not None)
    except UserError as e:
        raise click.ClickException(str(e)) from None
    verdict = settle("rerank", output_dir, result.before, result.after, existed=existed, keep_worse=keep_worse)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(f"reranker -> {output_dir}: {result.train_rows} training rows, {result.eval_queries} held-out "
                   f"queries, {result.seconds:.0f}s\n{format_table(result)}")
    finish(verdict)


def _reader_options(f):
    """The options `finetune reader` and `finetune verifier` share (one network, docqa/reader/net.py)."""
    for opt in reversed([
        click.option("--train", "train_specs", multiple=True, metavar="PATH[@part]",
                     help="SQuAD-style training file (CMRC 2018, DRCD, CAIL2019, SQuAD 2), repeatable; @train, @dev, "
                     "@test, @all picks the part of docqa's split by case or article (default all)."),
        click.option("--heldout", "heldout_specs", multiple=True, metavar="PATH[@part]",
                     help="Held-out file for the before/after table (repeatable); never the cases you train on."),
        click.option("--kb", default=None, metavar="NAME",
                     help="Also train on questions made from this KB's passages (as `docqa eval make` makes them; "
                     "the KB's LLM words them when one is configured), split by document."),
        click.option("--kb-questions", default=2000, show_default=True, type=click.IntRange(1),
                     help="Questions made from the KB at most."),
        click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="The file to write (.safetensors: the trained top layers and heads)."),
        click.option("--encoder", default=None, type=click.Path(file_okay=False, path_type=Path),
                     help="The e5 folder (default: the one `docqa models build` made)."),
        click.option("--init", default=None, type=click.Path(dir_okay=False, path_type=Path),
                     help="Start from this reader (or verifier) file instead of fresh heads (before = that file)."),
        click.option("--layers", default=4, show_default=True, type=click.IntRange(1, 12),
                     help="Top encoder layers trained (12: all; sensible on a GPU)."),
        click.option("--epochs", default=1.0, show_default=True, type=float),
        click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1)),
        click.option("--lr", default=1e-4, show_default=True, type=float),
        click.option("--max-train", default=None, type=click.IntRange(1), help="Training questions used at most."),
        click.option("--max-heldout", default=1500, show_default=True, type=click.IntRange(1)),
        click.option("--device", default="cpu", show_default=True,
                     help="cpu or cuda (falls back to cpu without one)."),
        click.option("--threads", default=None, type=click.IntRange(1),
                     help="CPU threads for torch (default: all cores)."),
        click.option("--seed", default=7, show_default=True, type=int),
        click.option("--terse", default=0.0, show_default=True, type=click.FloatRange(0, 1),
                     help="Share of span questions also asked tersely (finetune/reader/data.py terse_question): "
                          "fewer of the passage's own words, as users ask. Reader only."),
        keep_worse_option,
    ]):
        f = opt(f)
    return f


@finetune.command()
@_reader_options
def reader(**opts) -> None:
    """Train the reader (answer span + answerability, docqa/reader) on question-answering sets; prints the
    held-out before/after table. Resumable: rerunning the same command continues from OUT.ckpt."""
    _train_reader("reader", **opts)


@finetune.command()
@_reader_options
def verifier(**opts) -> None:
    """Train the grounding verifier (does a passage state what a draft sentence claims? docqa/reader/grounding.py)
    on question-answering sets: claims made from their answers, swapped facts of the same passage as negatives;
    prints the held-out before/after table. Start it from the reader (`--init docqa/reader/reader.safetensors`).
    Resumable: rerunning the same command continues from OUT.ckpt."""
    _train_reader("verifier", **opts)


def _train_reader(task, train_specs, heldout_specs, kb, kb_questions, out, encoder, init, layers, epochs, batch_size,
                  lr, max_train, max_heldout, device, threads, seed, terse, keep_worse) -> None:
    import shlex
    import sys as _sys

    from docqa.models import E5_SMALL, build_hint, built_model_dir
    from finetune.reader.job import ReaderJob, run
    from finetune.reader.train import TrainConfig
    from finetune.verdict import settle, snapshot

    enc = encoder or built_model_dir(E5_SMALL)
    if not (enc / "tokenizer.json").is_file():
        raise click.ClickException(f"no encoder at {enc}: {build_hint(E5_SMALL)}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            click.echo(f"[{task}] no CUDA device here: training on the CPU", err=True)
            device = "cpu"
    if threads:
        import torch

        torch.set_num_threads(threads)
    cfg = TrainConfig(trainable=layers, batch_size=batch_size, lr=lr, epochs=epochs, seed=seed, device=device)
    command = f"docqa finetune {task} " + shlex.join(_sys.argv[3:] if len(_sys.argv) > 3 else [])
    if not train_specs and not kb:
        raise click.UsageError("give --train PATH[@part] (repeatable), --kb NAME, or both")
    from_kb = []
    if kb:
        from docqa.kb import KnowledgeBase
        from docqa.settings import load_settings
        from finetune.reader.data import kb_questions as make_questions

        kbase = KnowledgeBase.open(kb, load_settings())
        llm = None
        if str(getattr(kbase.settings.llm_backend, "value", kbase.settings.llm_backend)) != "extractive":
            from service.llm import kb_llm_settings, llm_for

            llm = llm_for(kb_llm_settings(kbase.settings, kb))
        from_kb = make_questions(kbase, kb_questions, seed, llm)
        click.echo(f"[{task}] {len(from_kb)} questions made from KB {kb}", err=True)
    job = ReaderJob(enc, list(train_specs), list(heldout_specs), out, cfg, init, max_train, max_heldout, command,
                    from_kb, task, terse)
    existed = snapshot(out.parent)
    try:
        res = run(job, log=lambda m: click.echo(m, err=True))
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    verdict = settle(task, out.parent, res["before"], res["after"],
                     existed=existed, keep_worse=keep_worse)
    click.echo(f"{task} -> {out}: {res['train_windows']} training windows, {res['heldout_windows']} held-out windows, "
               f"{res['seconds'] / 60:.0f} min")
    finish(verdict)


@finetune.command("statute-questions")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--per-article", default=2, show_default=True, type=click.IntRange(1))
def statute_questions(paths, out, per_article) -> None:
    """Markdown statutes (files or folders) -> a SQuAD-style file of rule questions for `finetune reader --train`:
    each article sentence holding a duration, amount or count asked about as `docqa eval make` asks."""
    from finetune.reader.statutes import write

    laws, n = write(list(paths), out, per_article)
    if not n:
        raise click.ClickException(f"no article sentence with a fact to ask about in {', '.join(map(str, paths))}")
    click.echo(f"{n} questions from {laws} statutes -> {out}")
