"""Who is calling, and what they may do: API keys (``keys.py``) as a FastAPI dependency.

``CallerDep`` is the caller of a request: with keys configured, the holder of a valid
``Authorization: Bearer <key>`` (401 without one, naming why); with no active key in the keys file,
loopback-only mode, where the server refuses to bind a non-loopback address and every local caller
is an admin. Routes state the role and the KB they need with ``caller.require(role, kb)`` (403 with a
message otherwise). Refusals are logged with the key's id, never the key.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request

from docqa.filters import DocFilter, FilterError, doc_filter, normalize_groups
from docqa.kb import KnowledgeBase
from service.auth.keys import KeyError_, KeyRecord, KeyStore, Role, keys_path
from service.errors import ApiError

log = logging.getLogger("docqa.auth")


@dataclass(frozen=True)
class Caller:
    key_id: str | None  # None: loopback-only mode, no keys configured
    role: Role
    kbs: frozenset[str] | None  # None: every KB
    groups: tuple[str, ...] | None = ()  # None: every document (loopback mode, or a key with group '*')

    def filter(self, where: dict | None = None) -> DocFilter:
        """What this caller's queries may see: its groups, and the request's metadata filters (422 when
        they cannot be applied)."""
        try:
            return doc_filter(self.groups, where)
        except FilterError as e:
            raise ApiError(422, f"filters: {e}") from None

    @property
    def writable_groups(self) -> frozenset[str] | None:
        """The groups this caller may file documents in: None for any (KB-wide documents included) —
        loopback mode, an admin, or a key whose groups are '*'; else exactly its groups (none: a key that
        reads and writes only KB-wide documents)."""
        if self.groups is None or "*" in self.groups or self.role >= Role.ADMIN:
            return None
        return frozenset(self.groups)

    def may_write(self, groups) -> str | None:
        """Why this caller may not file (or replace, or delete) a document readable by ``groups``; None when
        it may (``docqa.doc_meta.outside_groups``)."""
        from docqa.doc_meta import outside_groups

        return outside_groups(groups, self.writable_groups)

    def acting_as(self, groups: list[str] | None) -> Caller:
        """This admin as a reader key whose groups are ``groups`` would be (the console's "retrieval test as a
        key with groups ..."): the same KBs, exactly those groups' documents. None: this caller. 403 for a
        caller below admin: a key may not widen, or even name, other groups."""
        if groups is None:
            return self
        if self.role < Role.ADMIN:
            raise ApiError(403, "as_groups needs the admin role (it tests what a key with those groups would see)",
                           "permission_denied")
        try:
            names = normalize_groups(groups, "as_groups")
        except FilterError as e:
            raise ApiError(422, str(e)) from None
        return Caller(self.key_id, Role.READER, self.kbs, tuple(names))

    def may_see(self, kb: str) -> bool:
        return self.kbs is None or kb in self.kbs

    def require(self, role: Role, kb: str | None = None) -> None:
        if self.role < role:
            log.warning("auth: key %s (%s) refused: needs %s", self.key_id, self.role.name.lower(), role.name.lower())
            raise ApiError(403, f"this API key's role ({self.role.name.lower()}) may not do this: it needs the "
                                f"{role.name.lower()} role", "permission_denied")
        if kb is not None and not self.may_see(kb):
            log.warning("auth: key %s refused on knowledge base %s", self.key_id, kb)
            raise ApiError(403, f"this API key has no access to knowledge base {kb!r}", "permission_denied")


LOOPBACK = Caller(None, Role.ADMIN, None, None)
# headers a reverse proxy adds: a request carrying one did not start on this host
_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "via")


def get_caller(request: Request) -> Caller:
    return caller_for(request.app.state.keys, request.app.state.registry.settings, request.headers)


def caller_for(store: KeyStore, settings, headers) -> Caller:
    """The caller of a request with ``headers`` (any mapping with case-insensitive ``get``: Starlette's), for
    every front end that speaks HTTP (the API, Dify's route, MCP over streamable HTTP); ``ApiError`` when it
    may not call at all."""
    try:
        keyed = store.any_active()
    except KeyError_ as e:  # an unreadable keys file: nobody gets in, and the operator is told why
        log.error("%s", e)
        raise ApiError(503, "the server's keys file is unreadable; see the server log", "unavailable") from None
    if not keyed:
        relayed = sorted(h for h in _PROXY_HEADERS if h in headers)
        if relayed and not settings.loopback_trust_proxy:
            log.warning("auth: refused a request relayed by a proxy (%s) in loopback-only mode", ", ".join(relayed))
            raise ApiError(403, "this server has no API keys (loopback-only mode) and does not trust requests "
                                f"relayed by a proxy (the request carries {', '.join(relayed)}): create an API key "
                                "(`docqa keys create`), or set loopback_trust_proxy", "permission_denied")
        return LOOPBACK
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "this server requires an API key: send 'Authorization: Bearer <key>'", "unauthorized",
                       headers={"WWW-Authenticate": "Bearer"})
    rec = store.verify(token.strip())
    if rec is None:
        log.warning("auth: refused a key that is unknown, revoked or expired (id %s)", _key_id(token))
        raise ApiError(401, "the API key is invalid, revoked or expired", "unauthorized",
                       headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return caller_of(rec)


def caller_of(rec: KeyRecord) -> Caller:
    return Caller(rec.id, Role.parse(rec.role), None if "*" in rec.kbs else frozenset(rec.kbs), tuple(rec.groups))


def _key_id(token: str) -> str:
    parts = token.strip().split("_")
    return parts[1][:8] if len(parts) >= 3 and parts[0] == "dqa" else "?"


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


CallerDep = Annotated[Caller, Depends(get_caller)]

__all__ = ["LOOPBACK", "AdminKB", "Caller", "CallerDep", "EditorKB", "KeyError_", "KeyRecord", "KeyStore", "ReaderKB",
           "Role", "caller_for", "get_caller", "is_loopback", "kb_dep", "keys_path"]


def kb_for(registry, caller: Caller, name: str | None, role: Role = Role.READER):
    """The KB a request names (or the server's only one), checked for ``caller``: a KB the key may not
    use is a 403 before it is even looked up, so a key cannot probe which KBs exist."""
    if name:
        caller.require(role, name)
    kb = registry.get(name)
    caller.require(role, kb.name)
    return kb


def kb_dep(role: Role):
    """A dependency: the KB named by the route's ``{kb}`` path parameter, checked for the caller and ``role``
    (``kb_for``)."""

    def dep(kb: Annotated[str, Path(max_length=64)], request: Request, caller: CallerDep) -> KnowledgeBase:
        return kb_for(request.app.state.registry, caller, kb, role)

    return dep


ReaderKB = Annotated[KnowledgeBase, Depends(kb_dep(Role.READER))]  # the {kb} of the path, readable by the caller
EditorKB = Annotated[KnowledgeBase, Depends(kb_dep(Role.EDITOR))]  # ... that the caller may change
AdminKB = Annotated[KnowledgeBase, Depends(kb_dep(Role.ADMIN))]  # ... that the caller administers
