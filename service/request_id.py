"""Request ids: every HTTP request gets one, echoed in the ``X-Request-ID`` response header.

The caller's ``X-Request-ID`` is kept when it is a sane token (a gateway's trace id), else a new
one is made; the id reaches the answering pipeline and the compliance audit log, so one support
ticket's id finds its verdict (``grep <id> audit.jsonl``).
"""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.compliance import clean_request_id
from service.logs import REQUEST_ID

HEADER = b"x-request-id"


class RequestIdMiddleware:
    """Pure ASGI (streams pass through untouched): sets ``request.state.request_id`` and the header."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", ())).get(HEADER, b"").decode("latin-1")
        rid = clean_request_id(given)
        scope.setdefault("state", {})["request_id"] = rid

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode("latin-1"))]}
            await send(message)

        token = REQUEST_ID.set(rid)  # every log record of this request carries it (service/logs.py)
        try:
            await self.app(scope, receive, with_header)
        finally:
            REQUEST_ID.reset(token)


def get_request_id(request: Request) -> str:
    """This request's id (a fresh one when the middleware is not installed, e.g. in a bare router)."""
    return getattr(request.state, "request_id", None) or clean_request_id(None)
