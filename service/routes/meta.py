"""Health, readiness and the list of knowledge bases."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.auth.access import CallerDep
from service.deps import RegistryDep
from service.llm.factory import llm_status
from service.schemas import error_responses

router = APIRouter(tags=["meta"])


@router.get("/healthz")
def healthz():
    """The process is up (liveness). HEAD answers the same, without a body."""
    return {"status": "ok"}


@router.head("/healthz", include_in_schema=False)
def healthz_head():
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
def metrics():
    """Prometheus text format (service/metrics.py): no label carries a KB name or any text."""
    from fastapi import Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from service.metrics import REGISTRY

    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz", responses={503: {"description": "Still loading, or no KB could be loaded."}})
def readyz(registry: RegistryDep):
    """200 once every served KB is open and its models are loaded; 503 before (readiness).

    A KB that is broken — it failed to load at start, or its files were damaged since — makes the status
    ``degraded``: it is listed under ``errors`` with the reason and under ``repair`` with the command, and
    requests to it get 503, while the others are served. The code stays 200: a Kubernetes readiness probe
    that failed would take the healthy KBs' traffic out of rotation too. 503 with ``status: error`` only
    when no KB could be loaded."""
    if registry.error:
        return JSONResponse({"status": "error", "error": registry.error}, status_code=503)
    if not registry.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    # An LLM that is down makes the service degraded, not unready: chat still answers (fallback
    # replies, `fallback: true`), so 200 keeps the instance in rotation; `llm` says which KB is affected.
    names = registry.names()
    llm = llm_status(registry.settings, names)
    rerank = {name: st for name in names if (st := _rerank_status(registry, name)) is not None}
    errors = dict(registry.kb_errors)
    for name in names:  # damaged since start-up, or broken now
        if name not in errors and (st := registry.status(name))["status"] == "broken":
            errors[name] = st["error"]
    reader = _reader_status(registry, names)
    verifier = _verifier_status(registry, names)
    degraded = bool(errors) or any(not v["available"] for v in llm.values()) or \
        any(not v["available"] for v in rerank.values()) or any(not v["available"] for v in reader.values()) or \
        any(not v["available"] for v in verifier.values())
    body = {"status": "degraded" if degraded else "ready", "kbs": names, "errors": errors,
            "repair": {name: f"docqa repair --kb {name}" for name in errors}, "llm": llm,
            "evidence_cache": dict(registry.evidence)}
    if reader:
        body["reader"] = reader
    if verifier:
        body["verifier"] = verifier
    return {**body, "rerank": rerank} if rerank else body


def _reader_status(registry, names: list[str]) -> dict:
    """Per KB with the reader on: whether it is in use. One that cannot load makes the service degraded:
    answers go on quoting the best-supported sentences, each with a warning."""
    from service.answering.reading import reader_for

    out = {}
    for name in names:
        try:
            settings = registry.get(name).settings
        except Exception:  # noqa: BLE001 - a KB that cannot be opened is reported under errors already
            continue
        reader, error = reader_for(settings)
        if reader is not None:
            ranked = settings.reader_rank and getattr(reader, "ranker", None) is not None
            out[name] = {"available": True, "model": settings.reader_model or "docqa-reader (shipped)",
                         "threshold": settings.reader_threshold,
                         "ranking": "window ranker" if ranked else "reader P(answer)"}
        elif error:
            out[name] = {"available": False, "error": error}
    return out


def _verifier_status(registry, names: list[str]) -> dict:
    """Per KB whose guard reads LLM drafts with the trained verifier (guard_verifier): whether it is in use. One that
    cannot load makes the service degraded: the guard's similarity and fact rules then decide alone."""
    from docqa.settings import ComplianceMode
    from service.compliance.filter import build_filter

    out = {}
    for name in names:
        try:
            kb = registry.get(name)
        except Exception:  # noqa: BLE001 - a KB that cannot be opened is reported under errors already
            continue
        s = kb.settings.compliance_for(name)
        if s.compliance is not ComplianceMode.GUARD or not s.guard_verifier:
            continue
        filt = build_filter(kb.settings, name, kb.embedder)
        if filt.verifier is not None:
            out[name] = {"available": True, "model": s.verifier_model or "docqa-verifier (shipped)",
                         "threshold": filt.verifier.threshold}
        else:
            out[name] = {"available": False, "error": filt.verifier_error or "not loaded"}
    return out


def _rerank_status(registry, name: str) -> dict | None:
    """A reranker that cannot be loaded makes the service degraded, not unready: answers go on without it."""
    try:
        kb = registry.get(name)
        if not kb.settings.rerank_model:
            return None
        if kb.reranker_error:
            return {"model": kb.settings.rerank_model, "available": False, "error": kb.reranker_error}
        return {"model": kb.settings.rerank_model, "available": True, "top_n": kb.settings.rerank_top_n}
    except Exception:  # noqa: BLE001 - a KB that cannot be opened is reported under errors already
        return None


@router.get("/v1/whoami", responses=error_responses(401))
def whoami(caller: CallerDep):
    """Who this key is: its role, KBs and groups (the console shows only what the role may do). In
    loopback-only mode (no keys), the local admin."""
    return {"key_id": caller.key_id, "mode": "keys" if caller.key_id else "loopback", "role": caller.role.name.lower(),
            "kbs": "*" if caller.kbs is None else sorted(caller.kbs),
            "groups": "*" if caller.groups is None else list(caller.groups)}


@router.get("/v1/kbs", responses=error_responses(401))
def kbs(registry: RegistryDep, caller: CallerDep):
    """The KBs this server serves that the caller's key may use, with the counts of what it may read; a
    damaged one is listed with ``status: broken`` and the reason (503 for it until it is repaired)."""
    return {"kbs": [_counted_for(registry, caller, registry.status(name)) for name in registry.names()
                    if caller.may_see(name)]}


def _counted_for(registry, caller, info: dict) -> dict:
    """A KB's counts as the caller sees it: documents outside its groups are not counted either."""
    if info.get("status") != "ok" or caller.groups is None:
        return info
    allowed = registry.get(info["name"]).allowed(caller.filter())
    if allowed is None:
        return info
    return {**info, "counts": {**info.get("counts", {}), "docs": len(allowed.doc_ids), "units": len(allowed.unit_ids)}}
