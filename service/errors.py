"""One error shape for every failure: ``{"error": {"message", "type", "code"}}`` (OpenAI's), never a
traceback. 4xx for what the client can fix, 503 while loading, 500 with a request id otherwise."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .registry import UnknownKB

log = logging.getLogger("docqa.errors")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error"):
        self.status, self.message, self.type = status, message, type_


def error_body(status: int, message: str, type_: str) -> dict:
    return {"error": {"message": message, "type": type_, "code": status}}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return f"malformed JSON body: {err.get('ctx', {}).get('error', err.get('msg'))}"
        loc = ".".join(str(x) for x in err.get("loc", []) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError):
        return JSONResponse(error_body(exc.status, exc.message, exc.type), status_code=exc.status)

    @app.exception_handler(UnknownKB)
    async def _kb(_: Request, exc: UnknownKB):
        return JSONResponse(error_body(404, str(exc), "not_found"), status_code=404)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        return JSONResponse(error_body(422, _validation_message(exc), "invalid_request_error"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return JSONResponse(error_body(exc.status_code, str(exc.detail), "invalid_request_error"),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception):
        rid = uuid.uuid4().hex[:12]
        log.exception("internal error %s", rid)
        return JSONResponse(error_body(500, f"internal error (request id {rid}); see the server log",
                                       "internal_error"), status_code=500)
