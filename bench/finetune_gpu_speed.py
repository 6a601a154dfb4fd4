"""GPU speed of our LoRA SFT setup vs a plain transformers + peft Trainer baseline (same run, same data).

Model: a randomly initialised Qwen2 with Qwen2.5-0.5B's shape (speed does not depend on the weights).
Data: synthetic RAG-SFT-shaped examples, lengths log-normal between 64 and 2048 tokens, the first
~80% of each (prompt + passages) masked out of the loss. Both runs: LoRA r16/alpha32 on all linear
layers, batch 8, same examples, same number of steps.

* baseline: the common plain recipe: fp32 weights + ``bf16=True`` autocast, random batches padded
  to the longest in the batch, ``adamw_torch``, gradient checkpointing on;
* ours: ``finetune.llm.train.training_args`` + ``wrap_adapter`` and the collator of ``setup``: bf16
  weights, length-grouped batches, pad to a multiple of 8, fused AdamW; with gradient checkpointing
  (our default) and without (the choice when memory allows).

Tokens/s counts real (non-pad) tokens over the timed steps (the first 5 are warm-up).
Needs CUDA. Run: python bench/finetune_gpu_speed.py [--steps 40]; writes bench/reports/finetune_gpu_speed.md
(or to $OUT when set, for the device tool).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WARMUP = 5


def qwen2_05b(dtype):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                      tie_word_embeddings=True, attn_implementation="sdpa")
    torch.manual_seed(0)
    return Qwen2ForCausalLM(cfg).to(dtype=dtype, device="cuda")


def make_data(n: int, seed: int = 0) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=6.2, sigma=0.6, size=n), 64, 2048).astype(int)
    out = []
    for length in lengths:
        ids = rng.integers(10, 150000, size=int(length)).tolist()
        cut = int(length * 0.8)
        out.append({"input_ids": ids, "labels": [-100] * cut + ids[cut:], "attention_mask": [1] * int(length)})
    return out


class Meter:
    """Counts real tokens per batch (collator side) and step end times (callback side)."""

    def __init__(self, collator):
        from transformers import TrainerCallback

        self.collator, self.tokens, self.times = collator, [], []
        meter = self

        class _CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                import torch

                torch.cuda.synchronize()
                meter.times.append(time.perf_counter())

        self.callback = _CB()

    def __call__(self, features):
        self.tokens.append(sum(len(f["input_ids"]) for f in features))
        return self.collator(features)

    def tokens_per_s(self) -> float:
        n = len(self.times)
        return sum(self.tokens[WARMUP:n]) / (self.times[-1] - self.times[WARMUP - 1])


class _Tok:
    """The few tokenizer attributes DataCollatorForSeq2Seq uses (no tokenizer files needed)."""

    pad_token_id = 0
    padding_side = "right"

    def pad(self, features, padding=True, max_length=None, pad_to_multiple_of=None, return_tensors="pt"):
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if pad_to_multiple_of:
            longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
        ids = [f["input_ids"] + [0] * (longest - len(f["input_ids"])) for f in features]
        mask = [f["attention_mask"] + [0] * (longest - len(f["attention_mask"])) for f in features]
        rest = {k: torch.tensor([f[k] for f in features]) for k in features[0]
                if k not in ("input_ids", "attention_mask")}
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), **rest}


def run(kind: str, data: list[dict], steps: int, gc: bool) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from finetune.llm.train import LLMTrainConfig, training_args, wrap_adapter

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    out = f"/tmp/speed-{kind}"
    if kind == "baseline":
        model = get_peft_model(qwen2_05b(torch.float32), LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                                                     target_modules="all-linear",
                                                                     task_type="CAUSAL_LM"))
        model.enable_input_require_grads()
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=8, max_steps=steps, learning_rate=2e-4,
                                 bf16=True, gradient_checkpointing=gc, report_to="none", save_strategy="no",
                                 logging_steps=1000, remove_unused_columns=False, disable_tqdm=True)
        collator = DataCollatorForSeq2Seq(_Tok(), padding=True, label_pad_token_id=-100)
    else:
        cfg = LLMTrainConfig(base_model="random-qwen2", data=[], output_dir=out, batch_size=8, grad_accum=1,
                             max_steps=steps, gradient_checkpointing=gc, progress=False)
        model = wrap_adapter(qwen2_05b(torch.bfloat16), cfg)
        if gc:
            model.enable_input_require_grads()
        args = training_args(cfg, len(data))
        args.logging_steps = 1000
        collator = DataCollatorForSeq2Seq(_Tok(), padding=True, label_pad_token_id=-100, pad_to_multiple_of=8)
    meter = Meter(collator)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=meter, callbacks=[meter.callback])
    trainer.train()
    result = {"run": kind + ("" if gc else " (no grad ckpt)"), "tokens_per_s": meter.tokens_per_s(),
              "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "steps": len(meter.times)}
    del trainer, model
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    data = make_data(args.steps * 8)
    results = [run("baseline", data, args.steps, gc=True), run("ours", data, args.steps, gc=True),
               run("ours", data, args.steps, gc=False)]
    base = results[0]["tokens_per_s"]
    mean_len = sum(len(d["input_ids"]) for d in data) / len(data)
    lines = [f"# LoRA SFT speed, Qwen2-0.5B shape (random init), {torch.cuda.get_device_name()}", "",
             f"{args.steps} steps x batch 8 of {len(data)} synthetic examples (mean {mean_len:.0f} tokens, 64-2048), "
             "LoRA r16 all-linear. Tokens/s = real tokens after 5 warm-up steps.", "",
             "| run | tokens/s | x baseline | peak GPU memory (GiB) |", "| --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['run']} | {r['tokens_per_s']:.0f} | {r['tokens_per_s'] / base:.2f} | {r['peak_gib']:.2f} |")
    report = "\n".join(lines)
    print(report)
    dest = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "bench" / "reports"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "finetune_gpu_speed.md").write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
