"""`docqa finetune ...`: training jobs. Each sub-command imports its job module only when run."""

from __future__ import annotations

import click


@click.group()
def finetune() -> None:
    """Train models on your own corpus: boundary (NSP) model, embedding model, LLM (LoRA)."""
