"""The knowledge bases a server serves: opened once, warmed up, reopened after a commit.

A KB view is cheap to check for staleness (one small manifest read); when ``docqa ingest`` has
committed a new generation, the next request gets a fresh view, so the server never needs a restart
to see new documents.
"""

from __future__ import annotations

import logging
import threading

from ingest.kb import KBError, KnowledgeBase, list_kbs
from ingest.settings import Settings

log = logging.getLogger("docqa.registry")


class UnknownKB(KBError):
    pass


class KBRegistry:
    def __init__(self, settings: Settings, only: str | None = None):
        self.settings = settings
        self.only = only
        self._open: dict[str, KnowledgeBase] = {}
        self._lock = threading.Lock()
        self.ready = False
        self.error: str | None = None

    def names(self) -> list[str]:
        if self.only:
            return [self.only]
        return list_kbs(self.settings)

    def default_name(self) -> str | None:
        names = self.names()
        return names[0] if self.only or len(names) == 1 else None

    def get(self, name: str | None) -> KnowledgeBase:
        if not name:
            name = self.default_name()
            if name is None:
                raise UnknownKB("name a knowledge base with \"kb\": this server has "
                                f"{len(self.names())} ({', '.join(self.names()) or 'none'})")
        if self.only and name != self.only:
            raise UnknownKB(f"unknown knowledge base {name!r}: this server serves only {self.only!r}")
        with self._lock:
            kb = self._open.get(name)
            if kb is None or kb.is_stale():
                try:
                    fresh = KnowledgeBase.open(name, self.settings)
                except KBError as e:
                    raise UnknownKB(str(e)) from None
                if kb is not None:
                    log.info("knowledge base %s: generation %s -> %s", name, kb.generation, fresh.generation)
                self._open[name] = kb = fresh
        return kb

    def warm_up(self) -> None:
        """Open every KB and load its models; sets ``ready`` (or ``error``)."""
        try:
            for name in self.names():
                self.get(name).warm_up()
            self.ready = True
        except Exception as e:  # reported by /readyz, never raised into the event loop
            log.exception("warm-up failed")
            self.error = f"{type(e).__name__}: {e}"
