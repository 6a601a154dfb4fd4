"""LoRA / DoRA / QLoRA supervised fine-tuning of the answering LLM with transformers' Trainer + peft.

Reads top to bottom: ``setup`` loads the tokenizer, the data (with ``--mix``) and the base model and
wraps it in an adapter; ``train`` measures held-out loss, trains, measures again and saves the
adapter directory, which ``vllm serve --enable-lora --lora-modules NAME=DIR`` loads as is and
``docqa finetune merge`` folds into the base model. On one CPU it runs as is; under
``accelerate launch`` / ``torchrun`` with the configs in deploy/ it runs data-parallel or sharded
(DeepSpeed ZeRO-2/3, FSDP) with no code change, because all of that lives inside the Trainer.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from pathlib import Path

from docqa.errors import UserError
from finetune.llm.data import DataFormat, load_conversations, mix, parse_mix
from finetune.llm.masking import AssistantTurns, encode_all


class AdapterKind(StrEnum):
    """How the base model is adapted.

    ``lora``: low-rank adapters on a full-precision (bf16 on GPU) base; the default.
    ``dora``: LoRA with a learned magnitude per output (weight-decomposed); a little better at
    low ranks, ~20-30% slower per step. Pick it when rank must stay small.
    ``qlora``: LoRA over a 4-bit NF4 base (bitsandbytes, CUDA only); ~4x less memory for the base
    weights, somewhat slower; pick it when the model does not fit in bf16.
    """

    LORA = "lora"
    DORA = "dora"
    QLORA = "qlora"


class FinetuneError(UserError, RuntimeError):
    """A problem the user can fix (wrong hardware for an option, no data...)."""


@dataclass
class LLMTrainConfig:
    base_model: str
    data: list[str]
    output_dir: str = "llm-adapter"
    data_format: DataFormat = DataFormat.AUTO
    mix: list[str] = field(default_factory=list)  # FILE:RATIO, general data against forgetting
    gguf_file: str | None = None  # when base_model is a directory holding a GGUF file
    adapter: AdapterKind = AdapterKind.LORA
    rank: int = 16  # capacity of the update; 8-64 covers most SFT, more data wants more rank
    alpha: int = 32  # scale = alpha / rank; 2x rank is the common, stable choice
    dropout: float = 0.05  # light regularisation; data sets of a few hundred rows overfit without it
    target_modules: str = "all-linear"  # every linear layer (QLoRA paper): clearly better than q,v only
    learning_rate: float = 2e-4  # LoRA trains ~10x higher than full fine-tuning (1e-5..2e-5)
    warmup_ratio: float = 0.03  # short warm-up: adapters start at zero, so the model starts unchanged
    epochs: float | None = None  # None: chosen from the data size, see default_epochs()
    batch_size: int = 4
    grad_accum: int = 4  # effective batch = batch_size x grad_accum x GPUs
    max_length: int = 2048  # longer examples are dropped (and counted), never cut
    assistant_turns: AssistantTurns = AssistantTurns.ALL
    gradient_checkpointing: bool = True  # ~30% slower, far less activation memory; off for tiny runs
    eval_fraction: float = 0.05
    from_adapter: str | None = None  # continue training this adapter
    merge_first: bool = False  # merge from_adapter into the base, then train a fresh adapter
    seed: int = 0
    progress: bool = True
    max_steps: int = -1  # for smoke tests and speed runs


def default_epochs(n_rows: int) -> int:
    """Epochs for a data set of ``n_rows``: ~15 at 100 rows, 10 at 1,000, 2 from 10,000 on.

    Small sets need many passes for the adapter to pick up the style at all; large sets overfit
    (and forget general skills) when repeated. Between the anchors we interpolate on a log scale,
    so the result never increases with more data.
    """
    if n_rows <= 100:
        return 15
    if n_rows >= 10_000:
        return 2
    x = math.log10(n_rows)
    if x <= 3:
        return round(15 - 5 * (x - 2))
    return round(10 - 8 * (x - 3))


def load_tokenizer(name: str, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    from docqa.models.embedder import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(name), gguf_file=gguf_file)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base_model(name: str, *, gguf_file: str | None = None, adapter: AdapterKind = AdapterKind.LORA):
    """The base causal LM: bf16 on CUDA, fp32 on CPU; 4-bit NF4 for QLoRA (CUDA only)."""
    import torch
    from transformers import AutoModelForCausalLM

    from docqa.models.embedder import resolve_model_path

    cuda = torch.cuda.is_available()
    kwargs: dict = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if adapter == AdapterKind.QLORA:
        if not cuda:
            raise FinetuneError("QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels); on this machine use "
                                "--adapter lora (or dora)")
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise FinetuneError("QLoRA needs bitsandbytes: pip install bitsandbytes") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return AutoModelForCausalLM.from_pretrained(resolve_model_path(name), **kwargs)


def target_modules(spec: str) -> str | list[str]:
    """``--target-modules``: "all-linear" (PEFT's keyword) or module names separated by commas ("q_proj,v_proj")."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    return spec.strip() if len(names) == 1 and names[0] == "all-linear" else names


def wrap_adapter(model, cfg: LLMTrainConfig):
    """Put a trainable adapter on ``model``: a new one, or ``from_adapter`` (continued or merged first)."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if cfg.adapter == AdapterKind.QLORA:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.from_adapter and not cfg.merge_first:
        return PeftModel.from_pretrained(model, cfg.from_adapter, is_trainable=True)
    if cfg.from_adapter:
        model = PeftModel.from_pretrained(model, cfg.from_adapter).merge_and_unload()
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=target_modules(cfg.target_modules), use_dora=cfg.adapter == AdapterKind.DORA,
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def load_data(cfg: LLMTrainConfig, tokenizer) -> tuple[list[dict], list[dict], dict]:
    """(train features, held-out features, counts) from ``cfg.data`` and ``cfg.mix``."""
    import random

    domain = [c for path in cfg.data for c in load_conversations(path, cfg.data_format)]
    general = []
    for spec in cfg.mix:
        path, ratio = parse_mix(spec)
        general.append((load_conversations(path, cfg.data_format), ratio))
    rng = random.Random(cfg.seed)
    rng.shuffle(domain)
    n_eval = min(200, int(len(domain) * cfg.eval_fraction)) if len(domain) >= 20 else 0
    held, rest = domain[:n_eval], domain[n_eval:]
    convs = mix(rest, general, seed=cfg.seed)
    train_f, dropped = encode_all(tokenizer, convs, turns=cfg.assistant_turns, max_length=cfg.max_length,
                                  progress=cfg.progress)
    eval_f, dropped_eval = encode_all(tokenizer, held, turns=cfg.assistant_turns, max_length=cfg.max_length,
                                      progress=False)
    if not train_f:
        raise FinetuneError(f"no usable training examples ({dropped} longer than --max-length {cfg.max_length})")
    counts = {"domain": len(rest), "general": len(convs) - len(rest), "train": len(train_f), "eval": len(eval_f),
              "dropped_too_long": dropped + dropped_eval}
    return train_f, eval_f, counts


def training_args(cfg: LLMTrainConfig, n_train: int):
    """transformers TrainingArguments for this job (bf16 and fused AdamW on CUDA)."""
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    epochs = cfg.epochs if cfg.epochs is not None else default_epochs(n_train)
    return TrainingArguments(
        output_dir=str(Path(cfg.output_dir) / "checkpoints"), num_train_epochs=epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="cosine", weight_decay=0.0, bf16=cuda, use_cpu=not cuda,
        optim="adamw_torch_fused" if cuda else "adamw_torch", gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False}, **_length_grouping(),
        logging_steps=5, save_strategy="no", eval_strategy="no", report_to="none", seed=cfg.seed,
        disable_tqdm=not cfg.progress, remove_unused_columns=False, ddp_find_unused_parameters=False)


def _length_grouping() -> dict:
    """Batch examples of similar length together: far less padding, same data per epoch.

    transformers renamed the switch (``group_by_length`` -> ``train_sampling_strategy``); take whichever exists.
    """
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def setup(cfg: LLMTrainConfig):
    """(trainer, counts): tokenizer, data, adapter-wrapped model and a Trainer, ready to train."""
    from transformers import DataCollatorForSeq2Seq, Trainer

    tokenizer = load_tokenizer(cfg.base_model, cfg.gguf_file)
    train_f, eval_f, counts = load_data(cfg, tokenizer)
    model = wrap_adapter(load_base_model(cfg.base_model, gguf_file=cfg.gguf_file, adapter=cfg.adapter), cfg)
    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    args = training_args(cfg, len(train_f))
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, pad_to_multiple_of=8)
    trainer = Trainer(model=model, args=args, train_dataset=train_f, eval_dataset=eval_f or None,
                      data_collator=collator, processing_class=tokenizer)
    counts["epochs"] = args.num_train_epochs
    return trainer, counts


def train(cfg: LLMTrainConfig) -> dict:
    """Train and save the adapter; returns counts and held-out loss before/after (also in train_metrics.json)."""
    t0 = time.perf_counter()
    trainer, counts = setup(cfg)
    result: dict = {"counts": counts}
    if trainer.eval_dataset is not None:
        result["eval_loss_before"] = round(trainer.evaluate()["eval_loss"], 4)
    out = trainer.train()
    result["train_loss"] = round(out.training_loss, 4)
    if trainer.eval_dataset is not None:
        result["eval_loss_after"] = round(trainer.evaluate()["eval_loss"], 4)
    outdir = Path(cfg.output_dir)
    trainer.model.save_pretrained(str(outdir))
    trainer.processing_class.save_pretrained(str(outdir))
    cfg_dict = {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(cfg).items()}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (outdir / "train_metrics.json").write_text(json.dumps({**result, "config": cfg_dict}, indent=2, ensure_ascii=False),
                                               encoding="utf-8")
    return result
