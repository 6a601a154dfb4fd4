"""The FastAPI application: ``create_app()`` wires settings, the KB registry and the routes.

Models load in a background thread at start-up; ``/healthz`` answers at once, ``/readyz`` turns
200 when loading has finished, and chat requests get 503 (not a hang) until then.
"""

from __future__ import annotations

import contextlib
import re
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docqa.settings import Settings, load_settings
from service import openapi as deployment_openapi
from service.auth.keys import KeyStore, keys_path
from service.errors import error_body, install_error_handlers
from service.jobs import JobRunner
from service.limits import AnswerSlots
from service.llm.factory import warm_up_llms
from service.metrics import MetricsMiddleware
from service.registry import KBRegistry
from service.request_id import RequestIdMiddleware
from service.routes import chat, dify, documents, jobs, keys, meta, openai, search, web


def create_app(kb: str | None = None, settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    registry = KBRegistry(settings, only=kb)

    mcp: list = []  # the MCP server, when served at /mcp: its session manager runs while the app does

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        warm = threading.Thread(target=registry.warm_up, name="docqa-warm-up", daemon=True)
        warm.start()
        threading.Thread(target=warm_up_llms, args=(settings, registry.names()), name="docqa-llm-warm-up",
                         daemon=True).start()
        async with mcp[0].session_manager.run() if mcp else contextlib.nullcontext():
            yield
        registry.closing.set()  # no new evidence warm-up starts; running ones stop at their next step
        warm.join(timeout=30)
        registry.close()  # and are waited for: a thread inside the model at interpreter exit aborts it

    app = FastAPI(title="docqa", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,  # routes/web.py
                  description="Question answering over your own documents, with citations.")
    app.state.registry = registry
    app.state.slots = AnswerSlots.from_settings(settings)  # concurrent answers; 429 beyond the queue
    app.state.keys = KeyStore(keys_path(settings))  # API keys; none active = loopback-only mode
    # background jobs (evals, uploads), recorded under DOCQA_HOME so a crash cannot lose their outcome
    app.state.jobs = JobRunner(settings.home / ".jobs")
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_request_mb * 2**20),
                       upload_bytes=int(settings.max_upload_mb * 2**20))
    app.add_middleware(RequestIdMiddleware)  # X-Request-ID in, out, and into the audit log
    app.add_middleware(MetricsMiddleware)  # outermost: counts every request, 413s and errors included
    install_error_handlers(app)
    for module in (meta, chat, openai, search, jobs, documents, keys, web):
        app.include_router(module.router)
    if settings.dify_retrieval_path:
        app.include_router(dify.make_router(settings.dify_retrieval_path, settings.max_question_chars))
    if settings.mcp_http:
        from service.integrations.mcp_server import build_server, http_caller, mount

        mcp.append(build_server(registry, app.state.slots, http_caller(app.state.keys, settings)))
        mount(app, mcp[0], app.state.keys, settings)
    web.mount_static(app)
    deployment_openapi.install(app, settings, registry)  # the schema states this deployment's limits and KBs
    return app


_UPLOAD = re.compile(r"/v1/kbs/[^/]+/documents/?")


class BodyLimit:
    """413 for request bodies over ``max_bytes``, before they are buffered or parsed.

    uvicorn accepts bodies of any size and FastAPI reads the whole body before validation, so
    without this one request of a few GB would exhaust the server's memory. A declared
    Content-Length over the limit is refused at once; a chunked body is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None):
        self.app, self.max_bytes, self.upload_bytes = app, max_bytes, upload_bytes or max_bytes

    def _limit(self, scope: Scope) -> tuple[int, str]:
        if scope["method"] == "POST" and _UPLOAD.fullmatch(scope.get("path", "")):
            return self.upload_bytes, "DOCQA_MAX_UPLOAD_MB"
        return self.max_bytes, "DOCQA_MAX_REQUEST_MB"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit(scope)
        message = f"the request body is over the limit of {limit / 2**20:g} MB ({setting})"
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = JSONResponse(error_body(413, message, "invalid_request_error"), status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > limit:  # raised inside FastAPI's body read: handled as an HTTP error
                raise HTTPException(413, message)
            return msg

        await self.app(scope, counted, send)
