"""Fold a LoRA/DoRA adapter into its base model and save a plain safetensors model.

Serve the *adapter directory* when one base serves several tenants or tasks (vLLM
``--lora-modules NAME=DIR`` switches adapters per request at little cost); serve the *merged model*
when only one is needed (no adapter overhead per token) or the server has no LoRA support.
Merging is also the first step of "merge, then train a new adapter" continued training.
Without an adapter, ``merge_adapter`` writes the base alone: how a GGUF base (docqa's offline SmolLM2) becomes
the safetensors directory vLLM serves.
"""

from __future__ import annotations

from pathlib import Path


def merge_adapter(base_model: str, adapter_dir: str | None, output_dir: str, *, gguf_file: str | None = None) -> Path:
    """Write ``base + adapter`` (the base alone when ``adapter_dir`` is None) as a safetensors model with its
    tokenizer into ``output_dir`` (written beside it, then renamed: a failed run leaves no half model)."""
    import shutil

    from finetune.llm.train import FinetuneError, load_base_model, load_tokenizer

    if adapter_dir is not None and not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise FinetuneError(f"{adapter_dir} is not an adapter directory (no adapter_config.json)")
    model = load_base_model(base_model, gguf_file=gguf_file)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    if gguf_file:
        model = _plain(model)
    out = Path(output_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    load_tokenizer(base_model, gguf_file).save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _plain(model):
    """A GGUF-loaded model as a plain one: it refuses ``save_pretrained`` (its config names the GGUF
    quantisation, though the weights are already dequantised), so the weights move into a fresh model."""
    import copy

    from transformers import AutoModelForCausalLM

    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = AutoModelForCausalLM.from_config(cfg, dtype=model.dtype)
    plain.load_state_dict(model.state_dict(), strict=False)
    plain.tie_weights()
    return plain
