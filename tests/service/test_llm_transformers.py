"""The in-process ``transformers`` backend: a tiny random Llama (with and without a PEFT adapter),
and SmolLM2-135M-Instruct loaded from its GGUF file."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_support import lora_adapter, smollm2_gguf, tiny_llama

from service.llm import GenParams, LLMUnavailable
from service.llm.transformers_local import TransformersLocal, resolve_llm_source

pytestmark = pytest.mark.slow  # left out of `make test-fast`

MESSAGES = [{"role": "user", "content": "劳动合同期限一年的，试用期最长多久？"}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny_llm(tiny) -> TransformersLocal:
    llm = TransformersLocal(str(tiny), device="cpu")
    llm.warm_up()
    return llm


def test_greedy_generation_is_reproducible_and_streams_the_same_text(tiny_llm):
    p = GenParams(max_tokens=12)
    first = tiny_llm.generate(MESSAGES, p)
    assert first and first == tiny_llm.generate(MESSAGES, p)
    deltas = list(tiny_llm.stream(MESSAGES, p))
    assert len(deltas) > 1  # really streamed, token by token
    assert "".join(deltas) == first


def test_a_stream_closed_by_its_reader_stops_generating(tiny_llm):
    """The compliance filter stops the LLM at a failing sentence by closing the stream: the generation thread must
    stop too (it holds the model's lock), not run on to max_tokens."""
    full = tiny_llm.stream(MESSAGES, GenParams(max_tokens=400))
    assert "".join(full) and tiny_llm.tokens_streamed == 400  # the tiny model never stops early on its own
    stream = tiny_llm.stream(MESSAGES, GenParams(max_tokens=400))
    assert next(stream)
    stream.close()
    assert 0 < tiny_llm.tokens_streamed < 400, tiny_llm.tokens_streamed
    assert tiny_llm._gen_lock.acquire(timeout=5)  # the worker is gone: the next answer does not wait
    tiny_llm._gen_lock.release()


def test_max_tokens_bounds_the_output(tiny_llm):
    tok = tiny_llm._tok
    short = tiny_llm.generate(MESSAGES, GenParams(max_tokens=3))
    assert 0 < len(tok(short, add_special_tokens=False)["input_ids"]) <= 3


def test_no_repeat_ngram_size_forbids_repeated_ngrams(tiny_llm):
    tok = tiny_llm._tok  # one token per character: the text's bigrams are the generated bigrams
    params = GenParams(max_tokens=60, repetition_penalty=1.0)
    plain = tok(tiny_llm.generate(MESSAGES, params), add_special_tokens=False)["input_ids"]
    ids = tok(tiny_llm.generate(MESSAGES, params.override(no_repeat_ngram_size=2)), add_special_tokens=False)[
        "input_ids"]
    assert len(ids) == len(plain) == 60
    bigrams = list(zip(ids, ids[1:], strict=False))
    assert len(set(bigrams)) == len(bigrams)
    if len(set(zip(plain, plain[1:], strict=False))) < len(plain) - 1:
        assert ids != plain


def test_sampling_params_change_the_output(tiny_llm):
    greedy = tiny_llm.generate(MESSAGES, GenParams(max_tokens=16))
    sampled = {tiny_llm.generate(MESSAGES, GenParams(max_tokens=16, temperature=1.5, top_p=1.0)) for _ in range(3)}
    assert sampled - {greedy}


def test_peft_adapter_is_applied(tiny, tiny_llm, tmp_path):
    adapter = lora_adapter(tiny, tmp_path / "lora")
    tuned = TransformersLocal(str(tiny), adapter=str(adapter), device="cpu")
    p = GenParams(max_tokens=12)
    assert tuned.generate(MESSAGES, p) != tiny_llm.generate(MESSAGES, p)
    assert tuned.health().available


def test_missing_model_or_adapter_is_a_clear_unavailable_error(tiny, tmp_path):
    broken = TransformersLocal(str(tiny), adapter=str(tmp_path / "no-such-adapter"), device="cpu")
    with pytest.raises(LLMUnavailable, match="no-such-adapter"):
        broken.warm_up()
    h = broken.health()
    assert not h.available and "no-such-adapter" in h.reason
    with pytest.raises(LLMUnavailable, match="cannot load LLM"):
        TransformersLocal(str(tmp_path / "empty-dir-that-is-not-a-model"), device="cpu").warm_up()


def test_prompt_over_the_context_is_refused_with_the_reason(tiny_llm):
    long = [{"role": "user", "content": "试用期" * 3000}]
    with pytest.raises(Exception, match="over the model's context"):
        tiny_llm.generate(long, GenParams(max_tokens=4))


def test_smollm2_id_resolves_to_the_packaged_gguf():
    gguf = smollm2_gguf()
    assert resolve_llm_source("HuggingFaceTB/SmolLM2-135M-Instruct") == (str(gguf.parent), gguf.name)
    assert resolve_llm_source(str(gguf)) == (str(gguf.parent.resolve()), gguf.name)


@pytest.mark.slow
def test_smollm2_gguf_answers_with_its_own_chat_template():
    gguf = smollm2_gguf()
    llm = TransformersLocal(str(gguf.parent), gguf_file=gguf.name, device="cpu")
    llm.warm_up()
    assert "<|im_start|>" in llm._tok.chat_template  # SmolLM2's ChatML template, from the GGUF
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    out = llm.generate(msgs, GenParams(max_tokens=12))
    assert "Paris" in out  # the dequantised weights are the real model's, not noise
    assert "".join(llm.stream(msgs, GenParams(max_tokens=12))) == out


def test_vllm_backend_without_vllm_is_a_clear_unavailable_error():
    import importlib.util

    from service.llm.vllm_local import VLLMLocal

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    llm = VLLMLocal("some/model", adapter="/adapters/x", adapter_name="x")
    with pytest.raises(LLMUnavailable, match=r"pip install 'docqa\[vllm\]'"):
        llm.warm_up()
    assert not llm.health().available and "not installed" in llm.health().reason


def test_factory_shares_one_model_per_configuration_and_applies_kb_overrides(tiny):
    from docqa.settings import load_settings
    from service.llm import kb_llm_settings, llm_for

    s = load_settings(llm_backend="transformers", llm_base_model=str(tiny),
                      kb_llm={"contracts": {"llm_backend": "openai", "llm_model": "contracts-lora"}})
    assert llm_for(s) is llm_for(s.model_copy())
    per_kb = kb_llm_settings(s, "contracts")
    assert per_kb.llm_backend == "openai" and llm_for(per_kb).model == "contracts-lora"
    assert kb_llm_settings(s, "other") is s
    assert llm_for(load_settings(llm_backend="extractive")) is None
    with pytest.raises(ValueError, match="unknown key"):
        load_settings(kb_llm={"x": {"embed_model": "y"}})
