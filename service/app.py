"""The FastAPI application: ``create_app()`` wires settings, the KB registry and the routes.

Models load in a background thread at start-up; ``/healthz`` answers at once, ``/readyz`` turns
200 when loading has finished, and chat requests get 503 (not a hang) until then.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ingest.settings import Settings, load_settings

from .errors import install_error_handlers
from .registry import KBRegistry
from .routes import chat, meta, openai, search


def create_app(kb: str | None = None, settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    registry = KBRegistry(settings, only=kb)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=registry.warm_up, name="docqa-warm-up", daemon=True).start()
        yield

    app = FastAPI(title="docqa", version="0.1.0", lifespan=lifespan,
                  description="Question answering over your own documents, with citations.")
    app.state.registry = registry
    install_error_handlers(app)
    for module in (meta, chat, openai, search):
        app.include_router(module.router)
    return app
