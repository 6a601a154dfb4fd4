"""A small but real OpenAI-compatible server for the tests (FastAPI; run it with ``Served``).

It serves each named model through our own ``LLM`` interface: the tiny random Llama through the
``transformers`` backend (so the ``openai`` client path runs end to end against real generation),
and ``Scripted``, an external-LLM stand-in that replies with the texts a test queued (so the
pipeline's handling of citations, refusals and broken streams is checked on known replies).
It records every request body, and can be told to fail the next N requests with HTTP 503, or to
break a stream off after its first delta.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from service.llm.base import GenParams, Health


class Scripted:
    """Replies with queued texts (then ``default``); streams them in 3-character deltas."""

    name = "scripted"

    def __init__(self, default: str = "这是回答[1]"):
        self.queue: list[str] = []
        self.default = default
        # pause the next stream once this many characters are out, until ``resume`` is set (a test can then
        # see what a client got while the LLM is still writing)
        self.pause_at: int | None = None
        self.resume = threading.Event()

    def generate(self, messages, params: GenParams) -> str:
        return self.queue.pop(0) if self.queue else self.default

    def stream(self, messages, params: GenParams) -> Iterator[str]:
        text = self.generate(messages, params)
        pause, self.pause_at = self.pause_at, None
        for i in range(0, len(text), 3):
            if pause is not None and i >= pause:
                pause = None
                self.resume.wait(timeout=60)
            yield text[i:i + 3]

    def warm_up(self) -> None:
        pass

    def health(self) -> Health:
        return Health(True)


def create_openai_app(models: dict) -> FastAPI:
    app = FastAPI()
    app.state.requests = []  # every chat request body, in order
    app.state.fail_next = 0  # answer this many next chat requests with 503
    app.state.break_stream = False  # cut the next stream after its first delta

    @app.get("/v1/models")
    def list_models():
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in models]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        app.state.requests.append(body)
        if app.state.fail_next > 0:
            app.state.fail_next -= 1
            return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}}, status_code=503)
        llm = models.get(body.get("model"))
        if llm is None:
            return JSONResponse({"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                           "type": "NotFoundError"}}, status_code=404)
        params = GenParams(temperature=body.get("temperature") or 0.0, top_p=body.get("top_p") or 1.0,
                           max_tokens=body.get("max_tokens") or 64,
                           repetition_penalty=body.get("repetition_penalty") or 1.0)
        if not body.get("stream"):
            text = llm.generate(body["messages"], params)
            return {"id": "cmpl-test", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                                                         "message": {"role": "assistant", "content": text}}]}
        cut, app.state.break_stream = app.state.break_stream, False
        return StreamingResponse(_events(llm, body, params, cut), media_type="text/event-stream")

    return app


def _events(llm, body: dict, params: GenParams, cut: bool) -> Iterator[str]:
    def chunk(delta: dict, finish=None) -> str:
        return "data: " + json.dumps({"id": "cmpl-test", "object": "chat.completion.chunk", "model": body["model"],
                                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]},
                                     ensure_ascii=False) + "\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for i, text in enumerate(llm.stream(body["messages"], params)):
        yield chunk({"content": text})
        if cut and i == 0:
            yield "data: {not json\n\n"  # a broken stream: the client must not pass it off as an answer
            return
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"
