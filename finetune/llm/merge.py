"""Fold a LoRA/DoRA adapter into its base model and save a plain safetensors model.

Serve the *adapter directory* when one base serves several tenants or tasks (vLLM
``--lora-modules NAME=DIR`` switches adapters per request at little cost); serve the *merged model*
when only one is needed (no adapter overhead per token) or the server has no LoRA support.
Merging is also the first step of "merge, then train a new adapter" continued training.
"""

from __future__ import annotations

from pathlib import Path


def merge_adapter(base_model: str, adapter_dir: str, output_dir: str, *, gguf_file: str | None = None) -> Path:
    """Write ``base + adapter`` as a safetensors model (with its tokenizer) into ``output_dir``."""
    from peft import PeftModel

    from finetune.llm.train import FinetuneError, load_base_model, load_tokenizer

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise FinetuneError(f"{adapter_dir} is not an adapter directory (no adapter_config.json)")
    base = load_base_model(base_model, gguf_file=gguf_file)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    out = Path(output_dir)
    merged.save_pretrained(str(out), safe_serialization=True)
    load_tokenizer(base_model, gguf_file).save_pretrained(str(out))
    return out
