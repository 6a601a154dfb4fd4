"""Concurrent answers are bounded: a request beyond the slots and the waiting line gets 429 with
Retry-After (never a pile-up), one that waits gets its slot in turn, and a stream holds its slot
until it ends. Driven through a real server whose LLM (a scripted OpenAI-compatible server) blocks
until the test lets it answer."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from llm_support import Served, build_kb
from openai_test_server import Scripted, create_openai_app

from docqa.settings import load_settings
from service.limits import AnswerSlots


class Gated(Scripted):
    """Answers only when ``gate`` is set."""

    def __init__(self):
        super().__init__(default="Visitors must sign in at the front desk [1].")
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def generate(self, messages, params):
        self.entered.release()
        assert self.gate.wait(60)
        return super().generate(messages, params)


@pytest.fixture(scope="module")
def gated():
    llm = Gated()
    with Served(create_openai_app({"scripted": llm})) as srv:
        yield srv, llm


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gated):
    from service.app import create_app

    llm_srv, _ = gated
    home = build_kb(tmp_path_factory.mktemp("slots") / "home")
    kb_llm = {"docs": {"llm_backend": "openai", "llm_url": f"{llm_srv.url}/v1", "llm_model": "scripted",
                       "llm_retries": 0}}
    settings = load_settings(home=home, kb_llm=kb_llm, max_concurrent_answers=1, max_waiting_answers=1,
                             answer_wait_s=1.0)
    with Served(create_app(settings=settings)) as srv:
        srv.wait_ready(timeout=300)
        yield srv


def until(pred, what: str, timeout: float = 30.0) -> None:
    """Poll ``pred`` until it holds (a busy machine may take its time; no fixed sleep can know how long)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.02)


QUESTION = {"question": "Visitors to the Lisbon office must do what?", "kb": "docs"}


def test_a_full_server_answers_429_with_retry_after_and_recovers(server, gated) -> None:
    _, llm = gated
    llm.gate.clear()
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(r=httpx.post(f"{server.url}/v1/chat", json=QUESTION,
                                                                    timeout=60)))
    t.start()
    assert llm.entered.acquire(timeout=30)  # the first answer holds the only slot, inside the LLM
    waited = {}
    w = threading.Thread(target=lambda: waited.update(r=httpx.post(f"{server.url}/v1/chat", json=QUESTION,
                                                                     timeout=60)))
    w.start()
    until(lambda: "docqa_answers_waiting 1.0" in httpx.get(f"{server.url}/metrics").text, "the second request to wait")
    third = httpx.post(f"{server.url}/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": QUESTION["question"]}], "kb": "docs"})
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
    assert third.json()["error"]["type"] == "rate_limit_exceeded" and "waiting" in third.json()["error"]["message"]
    w.join(timeout=30)
    assert waited["r"].status_code == 429 and "within 1 s" in waited["r"].json()["error"]["message"]
    llm.gate.set()
    t.join(timeout=60)
    assert first["r"].status_code == 200 and first["r"].json()["answer"]
    assert httpx.post(f"{server.url}/v1/chat", json=QUESTION, timeout=60).status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "docqa_refused_busy_total 2.0" in metrics


def test_a_stream_holds_its_slot_until_it_ends(server, gated) -> None:
    _, llm = gated
    llm.gate.set()
    with httpx.stream("POST", f"{server.url}/v1/chat", json={**QUESTION, "stream": True}, timeout=60) as r:
        assert r.status_code == 200
        body = r.read().decode()
    assert "event: done" in body
    # the slot came back when the stream ended: the next request is answered, not refused
    assert httpx.post(f"{server.url}/v1/chat", json=QUESTION, timeout=60).status_code == 200


def test_waiting_requests_get_their_slot_in_arrival_order() -> None:
    slots = AnswerSlots(concurrent=1, waiting=8, wait_s=10)
    order: list[int] = []
    first = slots.acquire()
    threads = []
    for i in range(4):
        def take(i=i):
            with slots.slot():
                order.append(i)
        threads.append(threading.Thread(target=take))
        threads[-1].start()
        until(lambda i=i: slots.stats()["waiting"] == i + 1, f"request {i} to wait")  # arrive in order 0, 1, 2, 3
    slots.release(first)
    for t in threads:
        t.join(timeout=10)
    assert order == [0, 1, 2, 3] and slots.stats() == {"busy": 0, "waiting": 0, "limit": 1}


def test_a_dropped_stream_gives_its_slot_back() -> None:
    slots = AnswerSlots(concurrent=1, waiting=0, wait_s=0)
    held = slots.held(iter(["a", "b"]), slots.acquire())
    assert next(held) == "a"
    with pytest.raises(Exception, match="429|answering as many"):
        slots.acquire()
    del held  # a client that went away: the response drops the iterator unfinished
    slots.release(slots.acquire())
    never_started = slots.held(iter(["x"]), slots.acquire())
    never_started.close()
    assert slots.stats()["busy"] == 0
