"""API keys: created by ``docqa keys create``, stored as hashes, checked in constant time.

A key reads ``dqa_<id>_<secret>``: the id (8 hex characters) finds its record, the secret (32 random
URL-safe bytes) is compared with the stored SHA-256 by ``hmac.compare_digest``. The secret has 256
bits of entropy, so a plain hash is the right tool (a slow password hash protects guessable
passwords, not random keys). The key itself is printed once, at creation, and never stored.

Each record: ``id, name, role (reader | editor | admin), kbs (names, or ["*"]), groups, expires (ISO
date or null), created, revoked``. The file (``keys_file``, default ``$DOCQA_HOME/keys.json``) is
rewritten atomically (temp file, fsync, rename) with mode 0600.

Rights: a reader may search and chat on its KBs; an editor may also change documents (uploads, when
they exist); an admin may also run evals and manage keys. Roles are ordered: each has the rights of
the ones below it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from enum import IntEnum
from pathlib import Path

from docqa.errors import UserError

_KEY = re.compile(r"^dqa_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")


class Role(IntEnum):
    READER = 1
    EDITOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise UserError(f"unknown role {name!r}: reader, editor or admin") from None


class KeyError_(UserError):
    """A key file or a key operation that cannot be done (the message says why)."""


@dataclass
class KeyRecord:
    id: str
    hash: str
    role: str
    kbs: list[str]
    groups: list[str] = field(default_factory=list)
    name: str = ""
    expires: str | None = None
    created: float = 0.0
    revoked: bool = False

    def expired(self, today: date | None = None) -> bool:
        return self.expires is not None and (today or date.today()) > date.fromisoformat(self.expires)

    def active(self) -> bool:
        return not self.revoked and not self.expired()

    def public(self) -> dict:
        d = asdict(self)
        d.pop("hash")
        d["status"] = "revoked" if self.revoked else ("expired" if self.expired() else "active")
        return d


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def keys_path(settings) -> Path:
    return Path(settings.keys_file).expanduser() if settings.keys_file else settings.home / "keys.json"


class KeyStore:
    """The keys of one file; re-read when the file changes (``docqa keys revoke`` takes effect on a
    running server at its next request)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._records: dict[str, KeyRecord] = {}
        self._stamp: tuple | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, KeyRecord]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return self._records
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                records = {r["id"]: KeyRecord(**r) for r in data.get("keys", [])}
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
                raise KeyError_(f"keys file {self.path} is unreadable ({e}); fix or remove it") from None
            self._records, self._stamp = records, stamp
        return self._records

    def records(self) -> list[KeyRecord]:
        with self._lock:
            return list(self._load().values())

    def any_active(self) -> bool:
        return any(r.active() for r in self.records())

    def verify(self, key: str) -> KeyRecord | None:
        """The active record of ``key``, or None (malformed, unknown, wrong secret, revoked, expired)."""
        m = _KEY.match(key or "")
        if not m:
            return None
        with self._lock:
            rec = self._load().get(m.group(1))
        expected = rec.hash if rec is not None else _digest("no such key")  # same work either way
        ok = hmac.compare_digest(expected, _digest(m.group(2)))
        return rec if ok and rec is not None and rec.active() else None

    def create(self, *, role: str, kbs: list[str], groups: list[str] | None = None, name: str = "",
               expires: str | None = None) -> tuple[str, KeyRecord]:
        """A new key (returned once, never stored) and its record."""
        Role.parse(role)
        if not kbs:
            raise KeyError_("a key needs at least one --kb (or '*' for every KB)")
        if expires is not None:
            try:
                until = date.fromisoformat(expires)
            except ValueError:
                raise KeyError_(f"--expires {expires!r} is not a date (YYYY-MM-DD)") from None
            if until < date.today():
                raise KeyError_(f"--expires {expires} is in the past")
        with self._lock:
            records = dict(self._load())
            kid = secrets.token_hex(4)
            while kid in records:
                kid = secrets.token_hex(4)
            secret = secrets.token_urlsafe(32)
            rec = KeyRecord(id=kid, hash=_digest(secret), role=role.lower(), kbs=sorted(set(kbs)),
                            groups=sorted(set(groups or [])), name=name, expires=expires, created=time.time())
            records[kid] = rec
            self._write(records)
        return f"dqa_{kid}_{secret}", rec

    def revoke(self, key_id: str) -> KeyRecord:
        with self._lock:
            records = dict(self._load())
            rec = records.get(key_id)
            if rec is None:
                raise KeyError_(f"no key with id {key_id!r} (docqa keys list shows them)")
            rec.revoked = True
            self._write(records)
        return rec

    def _write(self, records: dict[str, KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"keys": [asdict(r) for r in records.values()]}, f, ensure_ascii=False, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._stamp = None
