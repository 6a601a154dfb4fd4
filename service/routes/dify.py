"""``POST /retrieval`` (path: setting ``dify_retrieval_path``): Dify's External Knowledge API, so a Dify app can
use a docqa KB as its knowledge base (service/integrations/dify.py has the contract and the mapping).

Errors are in Dify's shape (``{"error_code", "error_msg"}``), not docqa's, because Dify is the client."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from docqa.errors import UserError
from docqa.kb.manifest import KBDamaged
from docqa.search import relevance, search
from service.auth.access import Caller, get_caller, kb_for
from service.compliance import redact_hits
from service.deps import check_question
from service.errors import ApiError
from service.integrations.dify import (
    AUTH_FAILED,
    AUTH_FORMAT,
    BAD_REQUEST,
    NO_KNOWLEDGE,
    UNAVAILABLE,
    DifyError,
    doc_filter,
    parse_request,
    record,
    request_schema,
)
from service.registry import BrokenKB, UnknownKB
from service.schemas import error_responses

_ERROR = {"type": "object", "required": ["error_code", "error_msg"],
          "properties": {"error_code": {"type": "integer"}, "error_msg": {"type": "string"}}}
_RECORDS = {"type": "object", "required": ["records"], "properties": {"records": {"type": "array", "items": {
    "type": "object", "required": ["content", "score", "title", "metadata"], "properties": {
        "content": {"type": "string"}, "score": {"type": "number", "minimum": 0, "maximum": 1},
        "title": {"type": "string"}, "metadata": {"type": "object"}}}}}}
_WHY = {400: "A request that does not follow the contract (4001, naming the field) or a metadata condition docqa "
             "cannot apply (4002).",
        403: "A malformed Authorization header (1001) or a key that fails (1002).",
        404: "The knowledge base does not exist, or the key may not read it (2001).",
        503: "Still loading, or the knowledge base is damaged (5001)."}


def _responses() -> dict:
    out: dict = {200: {"description": "The records, best first, at or above score_threshold.",
                       "content": {"application/json": {"schema": _RECORDS}}}}
    out.update({s: {"description": why, "content": {"application/json": {"schema": _ERROR}}}
                for s, why in _WHY.items()})
    out.update(error_responses(413))
    return out


def _doc(max_chars: int) -> dict:
    return {"summary": "Dify External Knowledge API",
            "description": "Dify's contract (service/integrations/dify.py): a docqa API key as the Bearer token, "
                           "knowledge_id = the knowledge base, records with a 0-1 score; errors as {error_code, "
                           "error_msg}.",
            "responses": _responses(),
            "openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {
                "schema": request_schema(max_chars)}}}}}


def make_router(path: str, max_chars: int) -> APIRouter:
    router = APIRouter(tags=["integrations"])

    @router.post(path, **_doc(max_chars))
    async def dify_retrieval(request: Request):
        try:
            caller = _caller(request)
            req = parse_request(await request.body())
            return await run_in_threadpool(_retrieve, request, caller, req)
        except DifyError as e:
            return JSONResponse(e.body(), status_code=e.status)

    return router


def _caller(request: Request) -> Caller:
    registry = request.app.state.registry
    if registry.error or not registry.ready:
        raise DifyError(503, UNAVAILABLE, "docqa is still loading its models (or failed to: see GET /readyz); "
                                          "retry shortly")
    if request.app.state.keys.any_active():
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise DifyError(403, AUTH_FORMAT, "Invalid Authorization header format. Expected 'Bearer <api-key>' "
                                              "format.")
    try:
        return get_caller(request)
    except ApiError as e:
        raise DifyError(403, AUTH_FAILED, f"Authorization failed: {e.message}") from None


def _retrieve(request: Request, caller: Caller, req) -> dict:
    registry = request.app.state.registry
    try:
        query = check_question(req.query, registry.settings, "query")
        kb = kb_for(registry, caller, req.knowledge_id)
    except ApiError as e:
        if e.status == 403:
            raise DifyError(404, NO_KNOWLEDGE, f"The knowledge does not exist: {req.knowledge_id!r}") from None
        raise DifyError(400, BAD_REQUEST, f"query: {e.message}") from None
    except (UnknownKB, UserError):  # a name that is no KB's
        raise DifyError(404, NO_KNOWLEDGE, f"The knowledge does not exist: {req.knowledge_id!r}") from None
    except (BrokenKB, KBDamaged) as e:
        raise DifyError(503, UNAVAILABLE, str(e)) from None
    where = doc_filter(caller.groups, req.metadata_condition)
    setting = req.retrieval_setting
    try:
        hits = search(kb, query, setting.top_k, where=where)
    except UserError as e:
        raise DifyError(400, BAD_REQUEST, str(e)) from None
    scores = [round(relevance(h, kb.settings), 6) for h in hits]  # as sent: a threshold copied from one holds
    public = redact_hits(kb, [h.public() for h in hits])
    return {"records": [record(h, s, kb.name) for h, s in zip(public, scores, strict=True)
                        if s >= setting.score_threshold]}
