"""One error shape for every failure: ``{"error": {"message", "type", "code"}}`` (OpenAI's), never a
traceback. 4xx for what the client can fix, 503 while loading, 500 with a request id otherwise."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from docqa.errors import Unavailable, UserError
from docqa.kb.manifest import KBBusy, KBDamaged, KBError
from service.registry import BrokenKB, KBNotNamed, UnknownKB

log = logging.getLogger("docqa.errors")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", *,
                 headers: dict[str, str] | None = None):
        self.status, self.message, self.type, self.headers = status, message, type_, headers


def error_body(status: int, message: str, type_: str) -> dict:
    return {"error": {"message": message, "type": type_, "code": status}}


_NOT_AN_OBJECT = ("the request body must be a JSON object sent with Content-Type: application/json; "
                  "see /docs for the fields")
# FastAPI's detail when the body could not even be decoded (not UTF-8, nested too deep...)
_UNPARSABLE = "There was an error parsing the body"


def _validation_message(exc: RequestValidationError) -> str:
    """One line a client can act on: which field is wrong and why, or what is wrong with the body."""
    parts = []
    for err in exc.errors():
        kind, loc = err.get("type"), tuple(err.get("loc", ()))
        if kind == "json_invalid":
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            return f"malformed JSON body{where}: {err.get('ctx', {}).get('error', err.get('msg'))}"
        if loc == ("body",):  # the body as a whole: missing, or not an object
            return "the request body is missing: " + _NOT_AN_OBJECT if kind == "missing" else _NOT_AN_OBJECT
        field = ".".join(str(x) for x in loc if x != "body")
        parts.append(f"{field or 'body'}: {_why(kind, err)}")
    return "; ".join(parts) or "invalid request"


def _why(kind: str | None, err: dict) -> str:
    """pydantic's message, in the words a client needs for the two cases it words obscurely."""
    if kind == "string_too_short" and err.get("ctx", {}).get("min_length") == 1:
        return "must not be empty"
    if kind == "string_unicode":  # e.g. a lone surrogate "\\ud800" sent as a JSON escape
        return "is not valid Unicode text (an unpaired surrogate?): send UTF-8 text"
    return str(err.get("msg"))


def _http_error(exc: StarletteHTTPException) -> tuple[int, str]:
    """Status and message for Starlette/FastAPI's own HTTP errors (404, 405, unparsable body...)."""
    if exc.status_code == 400 and exc.detail == _UNPARSABLE:
        cause = exc.__cause__
        why = "it is not UTF-8" if isinstance(cause, UnicodeDecodeError) else \
            "it is nested too deeply" if isinstance(cause, RecursionError) else "it could not be decoded"
        return 422, f"malformed JSON body: {why}"
    if exc.status_code == 400:  # Starlette's other parse failures (a broken multipart body): 422 like JSON's
        return 422, f"malformed request body: {exc.detail}"
    return exc.status_code, str(exc.detail)


def _allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI schema documents for the request's path (FastAPI's included routers
    hide their routes' methods from a scan of ``app.routes``; the schema is the contract anyway)."""
    import re

    methods: set[str] = set()
    for template, ops in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {m.upper() for m in ops if m in ("get", "head", "post", "put", "patch", "delete")}
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError):
        return JSONResponse(error_body(exc.status, exc.message, exc.type), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(UnknownKB)
    async def _kb(_: Request, exc: UnknownKB):
        return JSONResponse(error_body(404, str(exc), "not_found"), status_code=404)

    @app.exception_handler(BrokenKB)
    @app.exception_handler(KBDamaged)  # found mid-request (a damaged page, an index that will not load)
    async def _kb_broken(_: Request, exc: KBError):
        log.error("knowledge base unavailable: %s", exc)
        return JSONResponse(error_body(503, str(exc), "unavailable"), status_code=503)

    @app.exception_handler(KBBusy)
    async def _kb_busy(_: Request, exc: KBBusy):  # another writer: the client retries, nothing was touched
        return JSONResponse(error_body(409, str(exc), "conflict"), status_code=409, headers={"Retry-After": "5"})

    @app.exception_handler(KBNotNamed)
    async def _kb_not_named(_: Request, exc: KBNotNamed):
        return JSONResponse(error_body(422, str(exc), "invalid_request_error"), status_code=422)

    @app.exception_handler(Unavailable)
    async def _unavailable(_: Request, exc: Unavailable):  # a model or server down: an operator problem, told plainly
        log.error("unavailable: %s", exc)
        return JSONResponse(error_body(503, str(exc), "unavailable"), status_code=503)

    @app.exception_handler(UserError)
    async def _user(_: Request, exc: UserError):  # the request asked for something docqa cannot do as asked
        return JSONResponse(error_body(422, str(exc), "invalid_request_error"), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        return JSONResponse(error_body(422, _validation_message(exc), "invalid_request_error"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        status, message = _http_error(exc)
        headers = getattr(exc, "headers", None)
        if status == 405:  # Starlette's Allow names only the first route of the path; list every method
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return JSONResponse(error_body(status, message, "invalid_request_error"), status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        rid = getattr(request.state, "request_id", None) or uuid.uuid4().hex[:12]  # the X-Request-ID header's
        log.exception("internal error %s", rid)
        return JSONResponse(error_body(500, f"internal error (request id {rid}); see the server log",
                                       "internal_error"), status_code=500)
