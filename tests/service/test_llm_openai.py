"""The ``openai`` backend (HTTP client) against a real OpenAI-compatible server on loopback that
generates with the tiny Llama through our ``transformers`` backend."""

from __future__ import annotations

import time

import pytest
from llm_support import Served, free_port, tiny_llama
from openai_test_server import Scripted, create_openai_app

from service.llm import GenParams, LLMError, LLMUnavailable
from service.llm.openai_http import OpenAIHTTP, normalize_base_url
from service.llm.transformers_local import TransformersLocal

MESSAGES = [{"role": "user", "content": "国庆节放假几天？"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tiny = TransformersLocal(str(tiny_llama(tmp_path_factory.mktemp("tiny"))), device="cpu")
    tiny.warm_up()
    app = create_openai_app({"tiny": tiny, "tiny-lora": tiny, "scripted": Scripted()})
    with Served(app) as served:
        served.app, served.tiny = app, tiny
        yield served


def test_base_url_forms_are_normalised():
    for url in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/chat/completions"):
        assert normalize_base_url(url) == "http://h:8000/v1"


def test_generate_and_stream_return_the_servers_generation(server):
    client = OpenAIHTTP(server.url, "tiny")
    p = GenParams(max_tokens=10)
    direct = server.tiny.generate(MESSAGES, p)
    assert client.generate(MESSAGES, p) == direct
    deltas = list(client.stream(MESSAGES, p))
    assert len(deltas) > 1 and "".join(deltas) == direct


def test_model_name_selects_the_adapter_and_params_are_sent(server):
    client = OpenAIHTTP(server.url, "tiny-lora")
    client.generate(MESSAGES, GenParams(temperature=0.7, top_p=0.9, max_tokens=5, repetition_penalty=1.2))
    body = server.app.state.requests[-1]
    assert body["model"] == "tiny-lora"
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["repetition_penalty"]) == (0.7, 0.9, 5, 1.2)
    client.generate(MESSAGES, GenParams(max_tokens=5))
    assert "repetition_penalty" not in server.app.state.requests[-1]  # 1.0 is not sent (OpenAI rejects it)


def test_unknown_model_is_unavailable_and_names_the_served_ones(server):
    client = OpenAIHTTP(server.url, "no-such-adapter", retries=0)
    with pytest.raises(LLMUnavailable, match="no-such-adapter.*tiny-lora"):
        client.generate(MESSAGES, GenParams(max_tokens=4))
    h = client.health()
    assert not h.available and "no-such-adapter" in h.reason
    assert OpenAIHTTP(server.url, "tiny").health().available


def test_5xx_is_retried_with_backoff_then_given_up(server):
    client = OpenAIHTTP(server.url, "scripted", retries=2)
    server.app.state.fail_next = 2
    assert client.generate(MESSAGES, GenParams()) == "这是回答[1]"  # third attempt succeeds
    server.app.state.fail_next = 3
    with pytest.raises(LLMUnavailable, match="after 3 attempt.*503"):
        client.generate(MESSAGES, GenParams())
    server.app.state.fail_next = 0


def test_connection_refused_is_unavailable_quickly():
    client = OpenAIHTTP(f"http://127.0.0.1:{free_port()}", "tiny", retries=2, connect_timeout_s=1)
    t0 = time.perf_counter()
    with pytest.raises(LLMUnavailable, match="unavailable after 3 attempt.*ConnectError"):
        client.generate(MESSAGES, GenParams())
    assert time.perf_counter() - t0 < 5  # bounded: 0.25 s + 0.5 s of backoff, no hang
    with pytest.raises(LLMUnavailable):
        list(client.stream(MESSAGES, GenParams()))
    assert not client.health().available


def test_a_broken_stream_raises_instead_of_passing_as_an_answer(server):
    client = OpenAIHTTP(server.url, "scripted")
    server.app.state.break_stream = True
    with pytest.raises(LLMError, match="malformed event"):
        list(client.stream(MESSAGES, GenParams()))
