"""`docqa finetune llm | build-rag-sft | merge`: click commands; the jobs are imported when run."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from finetune.verdict import finish, keep_worse_option


@click.command("llm")
@click.argument("data", nargs=-1, required=True, type=click.Path())
@click.option("--base-model", required=True, help="HF id or local dir (a GGUF file path works too).")
@click.option("--output", "output_dir", required=True, type=click.Path(), help="Adapter output directory.")
@click.option("--format", "data_format", type=click.Choice(["auto", "alpaca", "multi-turn", "chat"]), default="auto",
              show_default=True)
@click.option("--mix", "mixes", multiple=True, metavar="FILE:RATIO",
              help="General data against forgetting, RATIO rows per domain row (repeatable).")
@click.option("--adapter", type=click.Choice(["lora", "dora", "qlora"]), default="lora", show_default=True,
              help="qlora: 4-bit base, CUDA only.")
@click.option("--rank", default=16, show_default=True, type=int)
@click.option("--alpha", default=32, show_default=True, type=int)
@click.option("--dropout", default=0.05, show_default=True, type=float)
@click.option("--target-modules", default="all-linear", show_default=True,
              help="all-linear, or module names separated by commas (q_proj,v_proj).")
@click.option("--lr", "learning_rate", default=2e-4, show_default=True, type=float)
@click.option("--warmup-ratio", default=0.03, show_default=True, type=float)
@click.option("--epochs", default=None, type=float, help="Default: from the data size (15 at 100 rows ... 2 at 10k).")
@click.option("--batch-size", default=4, show_default=True, type=int)
@click.option("--grad-accum", default=4, show_default=True, type=int)
@click.option("--max-length", default=2048, show_default=True, type=int, help="Longer examples are dropped.")
@click.option("--assistant-turns", type=click.Choice(["all", "last"]), default="all", show_default=True,
              help="Multi-turn: train on every assistant turn or only the last.")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=True, show_default=True)
@click.option("--from-adapter", type=click.Path(), default=None, help="Continue from this adapter.")
@click.option("--merge-first", is_flag=True, help="Merge --from-adapter into the base, then train a new adapter.")
@click.option("--max-steps", default=-1, type=int, hidden=True)
@keep_worse_option
def llm(data, base_model, output_dir, data_format, mixes, adapter, rank, alpha, dropout, target_modules,
        learning_rate, warmup_ratio, epochs, batch_size, grad_accum, max_length, assistant_turns,
        gradient_checkpointing, from_adapter, merge_first, max_steps, keep_worse) -> None:
    """LoRA SFT of the LLM on DATA files (alpaca, multi-turn or chat JSON/JSONL); loss on answers only."""
    from pathlib import Path

    from finetune.llm.data import DataFormat, load_conversations, parse_mix
    from finetune.llm.masking import AssistantTurns
    from finetune.llm.train import AdapterKind, LLMTrainConfig, train
    from finetune.verdict import settle, snapshot

    for path in [*data, *(parse_mix(spec)[0] for spec in mixes)]:
        load_conversations(path, DataFormat(data_format))  # bad records fail here, before any model loads
    gguf = None
    if base_model.endswith(".gguf"):
        base_model, gguf = str(Path(base_model).parent), Path(base_model).name
    cfg = LLMTrainConfig(
        base_model=base_model, data=list(data), output_dir=output_dir, data_format=DataFormat(data_format),
        mix=list(mixes), gguf_file=gguf, adapter=AdapterKind(adapter), rank=rank, alpha=alpha, dropout=dropout,
        target_modules=target_modules, learning_rate=learning_rate, warmup_ratio=warmup_ratio, epochs=epochs,
        batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
        assistant_turns=AssistantTurns(assistant_turns), gradient_checkpointing=gradient_checkpointing,
        from_adapter=from_adapter, merge_first=merge_first, max_steps=max_steps)
    existed = snapshot(output_dir)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer's log lines: stdout keeps only the result
        result = train(cfg)
    verdict = settle("llm", output_dir, {"eval_loss": result.get("eval_loss_before")},
                     {"eval_loss": result.get("eval_loss_after")}, existed=existed, keep_worse=keep_worse)
    click.echo(json.dumps(result, indent=2))
    if "eval_loss_before" in result:
        click.echo(f"held-out loss: {result['eval_loss_before']} -> {result['eval_loss_after']}")
    if verdict.kept:
        click.echo(f"adapter saved to {output_dir} (vllm serve BASE --enable-lora --lora-modules NAME={output_dir})")
    finish(verdict)


@click.command("build-rag-sft")
@click.option("--qa", "qa_file", required=True, type=click.Path(), help="JSONL/JSON {question, answer, ...}.")
@click.option("--kb", required=True, metavar="NAME")
@click.option("--output", required=True, type=click.Path(), help="Chat-format JSONL for `docqa finetune llm`.")
@click.option("--k", default=3, show_default=True, type=click.IntRange(1, 20), help="Passages per prompt.")
@click.option("--refusal-share", default=0.3, show_default=True, type=click.FloatRange(0, 1),
              help="Share of examples whose target is the refusal: unanswerable questions first, then "
                   "answerable ones with the gold passage removed; surplus unanswerable ones are left out.")
@click.option("--keep-mix", is_flag=True, help="Keep the data's own answerable/unanswerable mix (evaluation sets).")
@click.option("--seed", default=0, type=int)
def build_rag_sft(qa_file, kb, output, k, refusal_share, keep_mix, seed) -> None:
    """Build RAG SFT data: serving prompts with retrieved passages (+ distractors) and refusals."""
    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings
    from finetune.llm.rag_sft import build_rag_sft as build
    from finetune.llm.rag_sft import load_qa
    from finetune.records import write_jsonl

    report = build(KnowledgeBase.open(kb, load_settings()), load_qa(qa_file), k=k,
                   refusal_share=None if keep_mix else refusal_share, seed=seed)
    write_jsonl(output, report.examples)
    click.echo(f"{len(report.examples)} examples -> {output}: {report.answerable} answerable, {report.refusals} "
               f"refusals, {report.gold_inserted} with gold inserted, {report.skipped} skipped (answer not found), "
               f"{report.dropped_unanswerable} unanswerable left out (over --refusal-share)")


@click.command("merge")
@click.option("--base-model", required=True)
@click.option("--adapter", "adapter_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="Without it, the base alone is written (a GGUF base as the safetensors directory vLLM serves).")
@click.option("--output", required=True, type=click.Path())
def merge(base_model, adapter_dir, output) -> None:
    """Merge an adapter into its base model and save it as safetensors (or convert a GGUF base)."""
    from pathlib import Path

    from finetune.llm.merge import merge_adapter

    gguf = None
    if base_model.endswith(".gguf"):
        base_model, gguf = str(Path(base_model).parent), Path(base_model).name
    what = "merged model" if adapter_dir else "base model"
    click.echo(f"{what} saved to {merge_adapter(base_model, adapter_dir, output, gguf_file=gguf)}")
