"""Health, readiness and the list of knowledge bases."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import RegistryDep

router = APIRouter(tags=["meta"])


@router.get("/healthz")
def healthz():
    """The process is up (liveness)."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(registry: RegistryDep):
    """200 once every served KB is open and its models are loaded; 503 before (readiness)."""
    if registry.error:
        return JSONResponse({"status": "error", "error": registry.error}, status_code=503)
    if not registry.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return {"status": "ready", "kbs": registry.names()}


@router.get("/v1/kbs")
def kbs(registry: RegistryDep):
    out = []
    for name in registry.names():
        try:
            out.append(registry.get(name).info())
        except Exception as e:  # one broken KB must not hide the others
            out.append({"name": name, "error": str(e)})
    return {"kbs": out}
