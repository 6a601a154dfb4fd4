"""``POST /v1/search``: hybrid retrieval only (no answer), same hits as ``docqa search --json``."""

from __future__ import annotations

from fastapi import APIRouter

from docqa.search import search
from service.auth.access import CallerDep, kb_for
from service.compliance import redact_hits
from service.deps import RegistryDep, check_question, require_ready
from service.schemas import SearchRequest, error_responses

router = APIRouter(tags=["search"])


@router.post("/v1/search", responses=error_responses(401, 403, 404, 413, 422, 503))
def search_route(req: SearchRequest, registry: RegistryDep, caller: CallerDep):
    require_ready(registry)
    query = check_question(req.query, registry.settings, "query")
    kb = kb_for(registry, caller, req.kb)
    where = caller.acting_as(req.as_groups).filter(req.filters)
    # hits pass the same redaction as citations: blocklisted spans and personal data never leave the server
    hits = search(kb, query, req.k, mode=req.mode, where=where)
    return {"kb": kb.name, "hits": redact_hits(kb, [h.public() for h in hits])}
