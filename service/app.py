"""The FastAPI application: ``create_app()`` wires settings, the KB registry and the routes.

Models load in a background thread at start-up; ``/healthz`` answers at once, ``/readyz`` turns
200 when loading has finished, and chat requests get 503 (not a hang) until then.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.settings import Settings, load_settings

from .auth.keys import KeyStore, keys_path
from .errors import error_body, install_error_handlers
from .jobs import JobRunner
from .llm.factory import warm_up_llms
from .metrics import MetricsMiddleware
from .registry import KBRegistry
from .request_id import RequestIdMiddleware
from .routes import chat, jobs, meta, openai, search


def create_app(kb: str | None = None, settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    registry = KBRegistry(settings, only=kb)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=registry.warm_up, name="docqa-warm-up", daemon=True).start()
        threading.Thread(target=warm_up_llms, args=(settings, registry.names()), name="docqa-llm-warm-up",
                         daemon=True).start()
        yield

    app = FastAPI(title="docqa", version="0.1.0", lifespan=lifespan,
                  description="Question answering over your own documents, with citations.")
    app.state.registry = registry
    app.state.keys = KeyStore(keys_path(settings))  # API keys; none active = loopback-only mode
    app.state.jobs = JobRunner()  # background jobs (evals); its thread starts with the first job
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_request_mb * 2**20))
    app.add_middleware(RequestIdMiddleware)  # X-Request-ID in, out, and into the audit log
    app.add_middleware(MetricsMiddleware)  # outermost: counts every request, 413s and errors included
    install_error_handlers(app)
    for module in (meta, chat, openai, search, jobs):
        app.include_router(module.router)
    return app


class BodyLimit:
    """413 for request bodies over ``max_bytes``, before they are buffered or parsed.

    uvicorn accepts bodies of any size and FastAPI reads the whole body before validation, so
    without this one request of a few GB would exhaust the server's memory. A declared
    Content-Length over the limit is refused at once; a chunked body is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return f"the request body is over the limit of {self.max_bytes / 2**20:g} MB (DOCQA_MAX_REQUEST_MB)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(error_body(413, self._message(), "invalid_request_error"), status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # raised inside FastAPI's body read: handled as an HTTP error
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)
