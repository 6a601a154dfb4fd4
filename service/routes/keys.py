"""API keys over HTTP (admin role): list, create, revoke — the same store as ``docqa keys``.

An admin can hand out no more than it holds: a new key's KBs must be among the admin's own, its
groups among the admin's groups, and it sees and revokes only keys within its KBs. A keys file the
server cannot write (a Kubernetes Secret, a read-only volume) answers 409 saying so.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.auth.access import Caller, CallerDep, Role
from service.auth.keys import KeyError_, KeyRecord, KeyStore
from service.errors import ApiError
from service.schemas import error_responses

router = APIRouter(tags=["keys"])


class KeyRequest(BaseModel):
    kbs: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=100,
                                                                        description="KB names, or [\"*\"]: every KB.")
    role: str = Field(pattern="^(reader|editor|admin)$")
    groups: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=100, description="Document groups the key may read; [\"*\"]: all.")
    expires: str | None = Field(default=None, max_length=10, description="YYYY-MM-DD (the key works through it).")
    name: str = Field(default="", max_length=100)


def _store(request: Request) -> KeyStore:
    return request.app.state.keys


def _within(caller: Caller, rec: KeyRecord) -> bool:
    return caller.kbs is None or ("*" not in rec.kbs and set(rec.kbs) <= caller.kbs)


def _writable(fn):
    try:
        return fn()
    except OSError as e:
        raise ApiError(409, f"the keys file cannot be written here ({e.strerror or e}): it is managed outside "
                            "the server (e.g. a Kubernetes Secret); use `docqa keys` where it is written",
                       "conflict") from None


@router.get("/v1/keys", responses=error_responses(401, 403))
def list_keys(request: Request, caller: CallerDep):
    """The keys within the caller's KBs (ids, roles, KBs, groups, status; never a key or its hash)."""
    caller.require(Role.ADMIN)
    return {"keys": [r.public() for r in _store(request).records() if _within(caller, r)]}


@router.post("/v1/keys", status_code=201, responses=error_responses(401, 403, 409, 422))
def create_key(req: KeyRequest, request: Request, caller: CallerDep):
    """A new key, shown once in the response; only its hash is stored. The first key is made with
    `docqa keys create` on the server: a server in loopback-only mode (no keys) does not make one over
    HTTP, which would lock out every local client at once."""
    caller.require(Role.ADMIN)
    if caller.key_id is None:
        raise ApiError(409, "this server is in loopback-only mode (no API keys): create the first key with "
                            "`docqa keys create` where the server runs", "conflict")
    if caller.kbs is not None and ("*" in req.kbs or not set(req.kbs) <= caller.kbs):
        raise ApiError(403, "a key may only be given knowledge bases this admin key has", "permission_denied")
    if caller.groups is not None and ("*" in req.groups or not set(req.groups) <= set(caller.groups)):
        raise ApiError(403, "a key may only be given groups this admin key has", "permission_denied")
    try:
        key, rec = _writable(lambda: _store(request).create(role=req.role, kbs=req.kbs, groups=req.groups,
                                                            name=req.name, expires=req.expires))
    except KeyError_ as e:
        raise ApiError(422, str(e).replace("--", "")) from None
    return JSONResponse({"key": key, "record": rec.public()}, status_code=201)


@router.delete("/v1/keys/{key_id}", responses=error_responses(401, 403, 404, 409))
def revoke_key(key_id: Annotated[str, Path(max_length=16)], request: Request, caller: CallerDep):
    """Revoke a key: refused from its next request on."""
    caller.require(Role.ADMIN)
    store = _store(request)
    rec = next((r for r in store.records() if r.id == key_id), None)
    if rec is None or not _within(caller, rec):
        raise ApiError(404, f"no key {key_id!r}", "not_found")
    return {"record": _writable(lambda: store.revoke(key_id)).public()}
