"""Service overhead: time a request spends outside the LLM call, p50/p95.

Everything but generation is ours to make fast: history handling, condensation bookkeeping,
retrieval, the evidence check, prompt rendering, citation parsing, the compliance filter, JSON and
HTTP. To isolate it the LLM is a zero-latency OpenAI-compatible server (it answers at once with a
fixed cited reply), and the pipeline's own clock of its LLM calls (``Prepared.llm_seconds``,
which includes the HTTP round trip to that server) is subtracted.

Measured in one run, on one KB (CAIL2019 judgments), with the same questions:
- ``extractive``: the no-LLM path (the baseline: no prompt, no LLM client);
- ``openai (instant)``: the LLM path in-process; overhead = total - LLM time;
- ``HTTP /v1/chat``: the same LLM path through uvicorn, client to client (includes the LLM round trip).
Product defaults otherwise (compliance filter as configured: guard by default).

Usage::

    python bench/service_overhead.py --requests 100 --out bench/reports/service_overhead.md
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.calibrate_refusal import load_cases  # noqa: E402
from bench.common import (  # noqa: E402
    REPORTS,
    DataMissing,
    bench_settings,
    build_kb,
    machine_line,
    md_table,
    percentiles,
    temp_home,
    write_report,
)

REPLY = "根据判决书，答案见上文[1]。"


def with_settings(base, **changes):
    """``base`` with ``changes`` validated like any setting (strings become their enums)."""
    return base.with_overrides(changes)


def instant_llm_app():
    """An OpenAI-compatible server that answers at once (non-streaming) with ``REPLY``."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "instant", "object": "model"}]}

    @app.post("/v1/chat/completions")
    def chat():
        return {"id": "x", "object": "chat.completion", "model": "instant",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": REPLY}}]}

    return app


def serve(app) -> tuple[str, object]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server


def in_process(kb, questions: list[str], llm: dict) -> tuple[list[float], list[float]]:
    """Per request: (total ms, ms outside the LLM call), with ``llm`` laid over the KB's settings."""
    from service.answering.pipeline import answer, prepare

    base = kb.settings
    kb.settings = with_settings(base, **llm)
    total, outside = [], []
    try:
        for q in [questions[0], *questions]:  # the first one warms caches and is dropped
            t0 = time.perf_counter()
            prep = prepare(kb, q)
            answer(prep)
            dt = time.perf_counter() - t0
            total.append(dt * 1000)
            outside.append((dt - prep.llm_seconds) * 1000)
    finally:
        kb.settings = base
    return total[1:], outside[1:]


def over_http(settings, questions: list[str]) -> list[float]:
    """Client-side ms of POST /v1/chat through a real uvicorn server."""
    import httpx

    from service.app import create_app

    url, server = serve(create_app(settings=settings))
    try:
        with httpx.Client(timeout=60) as client:
            while client.get(f"{url}/readyz").status_code != 200:
                time.sleep(0.1)
            out = []
            for q in [questions[0], *questions]:
                t0 = time.perf_counter()
                r = client.post(f"{url}/v1/chat", json={"question": q})
                out.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
        return out[1:]
    finally:
        server.should_exit = True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--out", type=Path, default=REPORTS / "service_overhead.md")
    args = ap.parse_args(argv)
    try:
        passages, items = load_cases(args.cases, holdout_every=10_000)
    except DataMissing as e:
        print(f"skipped: {e}")
        return 0
    questions = [i.question for i in items if i.kind == "answerable"][: args.requests]
    llm_url, llm_server = serve(instant_llm_app())
    llm = {"llm_backend": "openai", "llm_url": llm_url, "llm_model": "instant", "llm_retries": 0}
    rows = []
    with temp_home() as home:
        kb, _ = build_kb(passages, "cail", bench_settings())
        ext_total, _ = in_process(kb, questions, {"llm_backend": "extractive"})
        llm_total, llm_outside = in_process(kb, questions, llm)
        http = over_http(bench_settings(home=home, **llm), questions)
    llm_server.should_exit = True
    base50 = percentiles(ext_total)[50]
    for name, ms in (("extractive (baseline), total", ext_total), ("openai (instant), total", llm_total),
                     ("openai (instant), outside the LLM call", llm_outside),
                     ("HTTP /v1/chat, openai (instant), client-side", http)):
        p = percentiles(ms)
        rows.append([name, len(ms), f"{p[50]:.1f}", f"{p[95]:.1f}", f"{p[50] / base50:.2f}"])
        print(f"{name}: p50 {p[50]:.1f} ms, p95 {p[95]:.1f} ms")
    body = f"""Machine: {machine_line()}

Command: `python bench/service_overhead.py --cases {args.cases} --requests {args.requests}`

{len(questions)} answerable CAIL2019 questions against a KB of {len(passages)} judgments; the LLM is a
zero-latency OpenAI-compatible server on loopback (fixed reply), so what remains is the service's own
time. Ratio: p50 against the extractive p50 of this run.

{md_table(["path", "requests", "p50 ms", "p95 ms", "p50 / extractive p50"], rows)}

Reading it: the three paths run one after the other, so a change in machine load between them
shows up as a difference between rows (the load average at start is in the first line); on a shared
machine only differences well above 2x mean anything. "Outside the LLM call" is the figure to track:
retrieval, the evidence check and the compliance filter are nearly all of it.
"""
    print(f"report: {write_report(args.out, 'Service overhead outside the LLM call', body)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
