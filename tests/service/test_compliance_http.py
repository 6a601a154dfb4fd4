"""The compliance filter end to end, through a real uvicorn server on loopback.

One DOCQA_HOME with the same small corpus (a bank brochure with a non-compliant sentence, and a
statute) in three KBs: ``desk`` (the default, guard), ``raw`` (compliance off) and ``llm`` (guard,
answers written by an external LLM, here the scripted OpenAI-compatible test server). Checked:
a blocklisted draft becomes the fallback with ``fallback: true`` and a reason, the verdict lands in
the audit log under the caller's X-Request-ID, streaming with the filter sends each sentence of an LLM draft
once it has passed the checks (before the LLM has finished), never a sentence that failed, and ends with the
verdict; without the filter the draft streams as written.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
import yaml
from llm_support import scripted_llm, serve_compliance_kbs, sse_events

from service.compliance import read_audit
from service.compliance.filter import DEFAULT_DIR

BROCHURE = ("# 鑫利宝理财产品说明\n\n鑫利宝是本行面向个人客户发行的理财产品，起购金额为一万元。\n\n"
            "本产品保本保息，稳赚不赔，预期年化收益率为百分之四点五。\n\n"
            "产品期限为一百八十天，到期后本金和收益自动转入客户的结算账户。\n")
STATUTE = ("# 劳动合同法\n\n第十九条 劳动合同期限三个月以上不满一年的，试用期不得超过一个月；劳动合同期限一年以上不满"
           "三年的，试用期不得超过二个月。\n")
BLOCKED_Q = "鑫利宝的预期年化收益率是多少？"
FALLBACKS = yaml.safe_load((DEFAULT_DIR / "fallbacks.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def llm_server():
    yield from scripted_llm("鑫利宝的起购金额为一万元[1]。")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embed_model: str, llm_server):
    gen = serve_compliance_kbs(tmp_path_factory, "compliance-http", {"xinlibao.md": BROCHURE, "labour.md": STATUTE},
                               ("desk", "raw", "llm"), llm_server[0].url,
                               kb_compliance={"raw": {"compliance": "off"}})
    srv, home, reports = next(gen)
    assert not any(r.failures for r in reports.values())
    yield srv, home
    gen.close()


def chat(srv, **body) -> httpx.Response:
    headers = {"X-Request-ID": body.pop("rid")} if "rid" in body else {}
    return httpx.post(f"{srv.url}/v1/chat", json=body, headers=headers, timeout=120)


def stream_chat(srv, **body) -> tuple[list[str], dict]:
    r = chat(srv, stream=True, **body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r)
    deltas = [json.loads(d)["text"] for e, d in events if e == "delta"]
    done = [json.loads(d) for e, d in events if e == "done"]
    assert len(done) == 1 and events[-1][0] == "done"
    return deltas, done[0]


def test_blocklisted_answer_becomes_the_stage_fallback_and_is_audited(server) -> None:
    srv, home = server
    raw = chat(srv, question=BLOCKED_Q, kb="raw").json()
    assert "稳赚不赔" in raw["answer"] and raw["fallback"] is False  # the draft really says it
    r = chat(srv, question=BLOCKED_Q, kb="desk", stage="consult", rid="ticket-4711")
    body = r.json()
    assert r.status_code == 200 and r.headers["x-request-id"] == "ticket-4711"
    assert body["fallback"] is True and body["answer"] == FALLBACKS["stages"]["consult"]["zh"]
    assert "blocklist" in body["reason"] and body["citations"] == []
    rec = [x for x in read_audit(home / "desk" / "audit.jsonl") if x["request_id"] == "ticket-4711"]
    assert len(rec) == 1
    assert rec[0]["kb"] == "desk" and rec[0]["stage"] == "consult" and rec[0]["question"] == BLOCKED_Q
    assert rec[0]["verdict"] == "fallback" and "稳赚不赔" in rec[0]["draft"] and rec[0]["text"] == body["answer"]
    assert not (home / "raw" / "audit.jsonl").exists()  # compliance off: no filter, no audit


def test_compliant_answer_passes_with_citations(server) -> None:
    srv, home = server
    r = chat(srv, question="鑫利宝的起购金额是多少？", kb="desk")
    body = r.json()
    assert body["fallback"] is False and "一万元" in body["answer"] and body["citations"]
    rid = r.headers["x-request-id"]
    assert len(rid) == 32  # generated when the caller sends none
    rec = next(x for x in read_audit(home / "desk" / "audit.jsonl") if x["request_id"] == rid)
    assert rec["verdict"] == "passed" and rec["text"] == body["answer"]


def test_stage_picks_the_fallback_and_a_bad_stage_is_refused(server) -> None:
    srv, _ = server
    body = chat(srv, question=BLOCKED_Q, kb="desk", stage="complaint").json()
    assert body["answer"] == FALLBACKS["stages"]["complaint"]["zh"]
    assert chat(srv, question=BLOCKED_Q, kb="desk").json()["answer"] == FALLBACKS["universal"]["zh"]
    bad = chat(srv, question=BLOCKED_Q, kb="desk", stage="Not A Stage!")
    assert bad.status_code == 422 and "stage" in bad.json()["error"]["message"]


def test_streaming_with_the_filter_streams_only_the_verdict(server) -> None:
    srv, _ = server
    deltas, done = stream_chat(srv, question=BLOCKED_Q, kb="desk", stage="consult")
    assert "".join(deltas) == done["answer"] == FALLBACKS["stages"]["consult"]["zh"]
    assert done["fallback"] is True and not any("稳赚" in d for d in deltas)
    r = httpx.post(f"{srv.url}/v1/chat/completions", timeout=120, json={
        "model": "desk", "stream": True, "stage": "consult", "messages": [{"role": "user", "content": BLOCKED_Q}]})
    chunks = [json.loads(d) for _, d in sse_events(r) if d != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == FALLBACKS["stages"]["consult"]["zh"] and chunks[-1]["fallback"] is True


def test_streaming_without_the_filter_streams_the_draft(server) -> None:
    srv, _ = server
    deltas, done = stream_chat(srv, question=BLOCKED_Q, kb="raw")
    assert "".join(deltas) == done["answer"] and "稳赚不赔" in done["answer"] and done["fallback"] is False


def test_llm_drafts_stream_by_sentence_under_the_guard(server, llm_server) -> None:
    srv, home = server
    _, scripted = llm_server
    scripted.queue.append("鑫利宝的起购金额为一万元[1]。")
    deltas, done = stream_chat(srv, question="鑫利宝的起购金额是多少？", kb="llm", rid="llm-ok")
    assert done["fallback"] is False and "".join(deltas) == done["answer"] == "鑫利宝的起购金额为一万元[1]。"
    assert deltas[0] == "鑫利宝的起购金额为一万元[1]。"  # sent by sentence, not in the LLM's 3-char pieces
    # unsupported; English because a general embedder puts any two Chinese sentences close together
    scripted.queue.append("The new metro line opens next May, and tickets will be free for a year [1].")
    deltas, done = stream_chat(srv, question="鑫利宝的起购金额是多少？", kb="llm", rid="llm-bad")
    assert done["fallback"] is True and done["reason"].startswith("compliance fallback: the draft is not supported")
    assert "".join(deltas) == FALLBACKS["universal"]["zh"] and not any("metro" in d for d in deltas)
    rec = {x["request_id"]: x for x in read_audit(home / "llm" / "audit.jsonl")}
    assert rec["llm-ok"]["verdict"] == "passed" and rec["llm-bad"]["verdict"] == "fallback"
    assert "metro" in rec["llm-bad"]["draft"]


TWO = "鑫利宝的起购金额为一万元[1]。产品期限为一百八十天[1]。"


def test_each_sentence_leaves_before_the_llm_has_finished(server, llm_server) -> None:
    """The first sentence reaches the client while the LLM is still writing the second (it is paused there
    until the client has it, or 30 s); deltas are sentences; the done event and the audit record agree."""
    srv, home = server
    scripted = llm_server[1]
    scripted.resume.clear()
    scripted.queue.append(TWO)
    scripted.pause_at = len("鑫利宝的起购金额为一万元[1]。产品期")
    timer = threading.Timer(30, scripted.resume.set)
    timer.start()
    first_before_resume, events = None, []
    try:
        with httpx.stream("POST", f"{srv.url}/v1/chat", timeout=120, headers={"X-Request-ID": "by-sentence"},
                          json={"question": "鑫利宝的起购金额和期限是多少？", "kb": "llm", "stream": True}) as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    if event == "delta" and first_before_resume is None:
                        first_before_resume = not scripted.resume.is_set()
                        scripted.resume.set()
                    events.append((event, line[5:].strip()))
    finally:
        timer.cancel()
        scripted.resume.set()
    deltas = [json.loads(d)["text"] for e, d in events if e == "delta"]
    done = json.loads(events[-1][1])
    assert first_before_resume is True, "the first sentence waited for the end of the answer"
    assert deltas == ["鑫利宝的起购金额为一万元[1]。", "产品期限为一百八十天[1]。"], deltas
    assert done["fallback"] is False and done["answer"] == "".join(deltas) == TWO
    rec = {x["request_id"]: x for x in read_audit(home / "llm" / "audit.jsonl")}["by-sentence"]
    assert rec["verdict"] == "passed" and rec["streamed"] == TWO and rec["draft"] == TWO


def test_a_sentence_that_fails_is_never_sent_and_the_stream_ends_with_the_fallback(server, llm_server) -> None:
    srv, home = server
    draft = "鑫利宝的起购金额为一万元[1]。另外本产品稳赚不赔，欢迎购买[1]。产品期限为一百八十天[1]。"
    llm_server[1].queue.append(draft)
    deltas, done = stream_chat(srv, question="鑫利宝的起购金额是多少？", kb="llm", rid="stopped")
    assert deltas[0] == "鑫利宝的起购金额为一万元[1]。"
    assert not any("稳赚" in d or "一百八十天" in d for d in deltas), deltas  # withheld, and the LLM was stopped
    assert done["fallback"] is True and "blocklist" in done["reason"]
    assert done["answer"] == FALLBACKS["universal"]["zh"] == "".join(deltas[1:])  # the verdict replaces the rest
    rec = {x["request_id"]: x for x in read_audit(home / "llm" / "audit.jsonl")}["stopped"]
    assert rec["verdict"] == "fallback" and rec["stopped_early"] is True
    assert rec["streamed"] == "鑫利宝的起购金额为一万元[1]。" and "稳赚不赔" in rec["draft"]
