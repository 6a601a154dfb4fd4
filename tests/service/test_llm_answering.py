"""The answering pipeline with an LLM backend, through the HTTP service (uvicorn on loopback):
citations kept only for passages given, refusals, fallback when the LLM is down or breaks off,
per-request generation parameters, streaming, and per-KB backend choice."""

from __future__ import annotations

import json

import httpx
import pytest
from llm_support import Served, build_kb, free_port, sse_events, tiny_llama
from openai_test_server import Scripted, create_openai_app

from docqa.kb import KnowledgeBase
from docqa.settings import load_settings
from service.answering import answer_question
from service.app import create_app
from service.llm.transformers_local import TransformersLocal

Q = "劳动合同期限一年以上不满三年的，试用期最长多久？"
OFF_TOPIC = "火星上的大气压是多少帕斯卡？"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return build_kb(tmp_path_factory.mktemp("kbs") / "home")


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    tiny_dir = tiny_llama(tmp_path_factory.mktemp("tiny"))
    tiny = TransformersLocal(str(tiny_dir), device="cpu")
    scripted = Scripted()
    app = create_openai_app({"scripted": scripted, "tiny": tiny})
    with Served(app) as s:
        s.app, s.scripted, s.tiny_dir = app, scripted, tiny_dir
        yield s


@pytest.fixture(scope="module")
def service(home, llm_server):
    # compliance and redaction off: these tests are about what the LLM path itself does (live streaming
    # included; either review holds the stream until its verdict)
    settings = load_settings(home=home, llm_backend="openai", llm_url=llm_server.url, llm_model="scripted",
                             llm_retries=0, compliance="off", redact="off")
    with Served(create_app(settings=settings)) as s:
        s.wait_ready()
        yield s


@pytest.fixture(scope="module")
def down_service(home):
    settings = load_settings(home=home, llm_backend="openai", llm_url=f"http://127.0.0.1:{free_port()}/v1",
                             llm_model="scripted", llm_retries=1, compliance="off", redact="off")
    with Served(create_app(settings=settings)) as s:
        s.wait_ready()
        yield s


def ask(service, llm_server, reply: str | list[str], **body) -> dict:
    llm_server.scripted.queue[:] = [reply] if isinstance(reply, str) else reply
    r = httpx.post(f"{service.url}/v1/chat", json={"question": Q, **body}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_citations_of_passages_not_given_are_dropped(service, llm_server):
    out = ask(service, llm_server, "试用期不得超过二个月[1][99]。")
    assert out["answer"] == "试用期不得超过二个月[1]。"
    assert [c["n"] for c in out["citations"]] == [1]
    prompt = llm_server.app.state.requests[-1]["messages"][-1]["content"]
    assert "<资料 编号=\"1\"" in prompt and "问题是：" + Q in prompt
    assert out["citations"][0]["text"] in prompt  # the cited passage is the one numbered [1] in the prompt
    assert not out["fallback"] and not out["refused"]


def test_an_uncited_answer_is_attributed_to_the_passage_it_comes_from(service, llm_server):
    out = ask(service, llm_server, "劳动合同期限一年以上不满三年的，试用期不得超过二个月。")
    assert out["answer"].endswith("]") and len(out["citations"]) == 1
    assert "不得超过二个月" in out["citations"][0]["text"]


def test_the_llms_refusal_is_reported_as_a_refusal(service, llm_server):
    out = ask(service, llm_server, "根据已知信息无法回答该问题。")
    assert out["refused"] and out["citations"] == [] and out["answer"] == "根据已知信息无法回答该问题"


def test_no_llm_call_when_the_evidence_does_not_support_an_answer(service, llm_server):
    before = len(llm_server.app.state.requests)
    r = httpx.post(f"{service.url}/v1/chat", json={"question": OFF_TOPIC}, timeout=60)
    assert r.json()["refused"] is True
    assert len(llm_server.app.state.requests) == before


def test_request_generation_params_reach_the_llm(service, llm_server):
    ask(service, llm_server, "答[1]", temperature=0.3, top_p=0.8, max_tokens=77, repetition_penalty=1.05)
    body = llm_server.app.state.requests[-1]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["repetition_penalty"]) == \
        (0.3, 0.8, 77, 1.05)
    r = httpx.post(f"{service.url}/v1/chat", json={"question": Q, "temperature": 5}, timeout=30)
    assert r.status_code == 422 and "temperature" in r.json()["error"]["message"]


def test_openai_endpoint_maps_its_fields(service, llm_server):
    llm_server.scripted.queue[:] = ["二个月[2]"]
    r = httpx.post(f"{service.url}/v1/chat/completions", timeout=60,
                   json={"messages": [{"role": "user", "content": Q}], "max_completion_tokens": 33,
                         "temperature": 0.2})
    data = r.json()
    assert data["choices"][0]["message"]["content"] == "二个月[2]" and data["citations"][0]["n"] == 2
    body = llm_server.app.state.requests[-1]
    assert body["max_tokens"] == 33 and body["temperature"] == 0.2


def test_streaming_relays_llm_deltas_then_the_final_result(service, llm_server):
    llm_server.scripted.queue[:] = ["试用期不得超过二个月[1][7]，工资不低于百分之八十[2]。"]
    r = httpx.post(f"{service.url}/v1/chat", json={"question": Q, "stream": True}, timeout=60)
    events = sse_events(r)
    deltas = [json.loads(d)["text"] for e, d in events if e == "delta"]
    done = json.loads(events[-1][1])
    assert events[-1][0] == "done" and len(deltas) > 3
    assert "".join(deltas) == done["answer"] == "试用期不得超过二个月[1]，工资不低于百分之八十[2]。"
    assert [c["n"] for c in done["citations"]] == [1, 2]


def test_a_stream_broken_mid_answer_ends_with_the_fallback(service, llm_server):
    llm_server.scripted.queue[:] = ["试用期不得超过二个月[1]。"]
    llm_server.app.state.break_stream = True
    r = httpx.post(f"{service.url}/v1/chat", json={"question": Q, "stream": True}, timeout=60)
    done = json.loads(sse_events(r)[-1][1])
    assert done["fallback"] is True and "LLM unavailable" in done["reason"]
    assert done["citations"] and "试用期" in done["answer"]  # the extractive answer from the same evidence


def test_llm_down_still_answers_with_the_fallback_and_readyz_says_so(down_service):
    r = httpx.post(f"{down_service.url}/v1/chat", json={"question": Q}, timeout=60)
    out = r.json()
    assert r.status_code == 200 and out["fallback"] is True
    assert "LLM unavailable" in out["reason"] and "ConnectError" in out["reason"]
    assert out["citations"] and "二个月" in out["answer"]
    ready = httpx.get(f"{down_service.url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["llm"]["docs"]["available"] is False
    events = sse_events(httpx.post(f"{down_service.url}/v1/chat", json={"question": Q, "stream": True}, timeout=60))
    assert json.loads(events[-1][1])["fallback"] is True
    assert "".join(json.loads(d)["text"] for e, d in events if e == "delta") == out["answer"]


def test_notice_fallback_gives_the_passages_not_a_quote(home):
    s = load_settings(home=home, llm_backend="openai", llm_url=f"http://127.0.0.1:{free_port()}",
                      llm_retries=0, llm_fallback="notice")
    out = answer_question(KnowledgeBase.open("docs", s), Q)
    assert out.fallback and out.answer.startswith("答案生成服务暂时不可用") and out.citations


def test_per_kb_backend_with_the_tiny_model_in_process_streams_tokens(home, llm_server):
    s = load_settings(home=home, kb_llm={"docs": {"llm_backend": "transformers",
                                                  "llm_base_model": str(llm_server.tiny_dir),
                                                  "llm_max_tokens": 24}}, compliance="off", redact="off")
    assert s.llm_backend == "extractive"  # the global default; the KB overrides it
    with Served(create_app(settings=s)) as svc:
        svc.wait_ready()
        r = httpx.post(f"{svc.url}/v1/chat", json={"question": Q, "stream": True}, timeout=120)
        events = sse_events(r)
        done = json.loads(events[-1][1])
        deltas = [json.loads(d)["text"] for e, d in events if e == "delta"]
        assert not done["fallback"] and not done["refused"] and len(deltas) > 5
        assert done["answer"].startswith("".join(deltas).rstrip())
        ready = httpx.get(f"{svc.url}/readyz", timeout=30).json()
        assert ready["llm"]["docs"]["available"] and ready["llm"]["docs"]["backend"].startswith("transformers:")


def test_with_the_compliance_filter_on_the_stream_is_held_until_the_verdict(home, llm_server):
    s = load_settings(home=home, llm_backend="openai", llm_url=llm_server.url, llm_model="scripted",
                      llm_retries=0, compliance="guard")
    draft = "劳动合同期限一年以上不满三年的，试用期不得超过二个月[1]。"
    llm_server.scripted.queue[:] = [draft]
    with Served(create_app(settings=s)) as svc:
        svc.wait_ready()
        events = sse_events(httpx.post(f"{svc.url}/v1/chat", json={"question": Q, "stream": True}, timeout=60))
    deltas = [json.loads(d)["text"] for e, d in events if e == "delta"]
    done = json.loads(events[-1][1])
    assert "".join(deltas) == done["answer"]  # only the reviewed text was ever sent
    assert len(deltas) <= 2  # sentence-sized pieces after the verdict, not the LLM's 3-character deltas
