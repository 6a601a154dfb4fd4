"""One model cache for the process (docqa.models.cache): one load per key however many threads ask at
once, a failed load not remembered, and the embedders of KBs keyed on every load parameter."""

from __future__ import annotations

import threading
import time

import pytest

from docqa.models.cache import ModelCache
from docqa.models.embedder import shared_embedder


def test_concurrent_asks_load_once_and_other_keys_do_not_wait():
    cache, loads, gate = ModelCache(), [], threading.Event()

    def slow():
        loads.append("a")
        gate.wait(10)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("m", "a", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while not loads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get("m", "b", lambda: "b-model") == "b-model"  # not blocked behind a's load
    gate.set()
    for t in threads:
        t.join(10)
    assert loads == ["a"] and len(got) == 4 and len({id(x) for x in got}) == 1
    assert sorted(cache.loaded("m")) == [("m", "a"), ("m", "b")]


def test_a_failed_load_is_not_remembered():
    cache, calls = ModelCache(), []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("not there yet")
        return "model"

    with pytest.raises(OSError):
        cache.get("m", "k", flaky)
    assert cache.get("m", "k", flaky) == "model" and len(calls) == 2 and cache.get("m", "k", flaky) == "model"


def test_embedders_are_shared_per_load_parameters():
    a = shared_embedder("some/model", "cpu", 64, "torch")
    assert shared_embedder("some/model", "cpu", 64, "torch") is a
    assert shared_embedder("some/model", "cpu", 16, "torch") is not a  # batch size is part of the load
    assert shared_embedder("some/model", "cpu", 64, "onnx") is not a
    assert a.load_key == ("some/model", "cpu", "torch", 64)
