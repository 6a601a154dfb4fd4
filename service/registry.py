"""The knowledge bases a server serves: opened once, warmed up, reopened after a commit.

A KB view is cheap to check for staleness (one small manifest read); when ``docqa ingest`` has
committed a new generation, the next request gets a fresh view, so the server never needs a restart
to see new documents.
"""

from __future__ import annotations

import logging
import threading

from docqa.kb import KBError, KnowledgeBase, kb_path, list_kbs
from docqa.kb.manifest import KBDamaged, KBNotFound, read_manifest
from docqa.settings import Settings
from service.compliance import warm_up_compliance

log = logging.getLogger("docqa.registry")


class UnknownKB(KBError):
    """The request names a KB this server does not serve (HTTP 404)."""


class BrokenKB(KBError):
    """The KB exists but cannot be read now (damaged manifest or files): HTTP 503 for that KB only."""


class KBNotNamed(KBError):
    """The request names no KB and the server serves several (HTTP 422: the client must pick one)."""


class KBRegistry:
    """The KBs of one server. ``only``: serve just that KB (it must exist: checked here, so
    ``docqa serve --kb typo`` fails at once instead of never becoming ready); ``None``: every KB
    under DOCQA_HOME, including ones created after start."""

    def __init__(self, settings: Settings, only: str | None = None):
        self.settings = settings
        self.only = only
        if only:
            read_manifest(kb_path(settings, only))  # KBError with a clear message: bad name or not found
        self._open: dict[str, KnowledgeBase] = {}
        self._lock = threading.Lock()
        self.ready = False
        self.error: str | None = None
        self.kb_errors: dict[str, str] = {}  # KBs that failed to warm up; the others are still served
        self.evidence: dict[str, dict] = {}  # per KB: evidence sentences encoded so far (warm_evidence)
        self.closing = threading.Event()
        self._threads: list[threading.Thread] = []

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
                names = self.names()
                raise KBNotNamed(f"name a knowledge base with \"kb\": this server serves {len(names)} "
                                 f"({', '.join(names) or 'none yet: run docqa ingest'})")
        if self.only and name != self.only:
            raise UnknownKB(f"unknown knowledge base {name!r}: this server serves only {self.only!r}")
        with self._lock:
            kb = self._open.get(name)
            if kb is None or kb.is_stale():
                try:
                    fresh = KnowledgeBase.open(name, self.settings)
                except KBDamaged as e:
                    self._open.pop(name, None)
                    raise BrokenKB(str(e)) from None
                except KBNotFound as e:
                    self._open.pop(name, None)
                    raise UnknownKB(str(e)) from None
                except KBError as e:  # a bad name, or a KB with nothing committed yet
                    raise UnknownKB(str(e)) from None
                if kb is not None:
                    log.info("knowledge base %s: generation %s -> %s", name, kb.generation, fresh.generation)
                    # load the new generation's indexes now, while its files are certainly there (a
                    # later writer deletes old generations), and once, not in every concurrent request
                    try:
                        _ = fresh.vectors, fresh.lexical
                    except KBDamaged as e:
                        self._open.pop(name, None)
                        raise BrokenKB(str(e)) from None
                self._open[name] = kb = fresh
        return kb

    def status(self, name: str) -> dict:
        """One KB as ``/v1/kbs`` lists it: its info with ``status: ok``, or ``status: broken`` and
        the reason (the other KBs are listed and served as usual)."""
        try:
            kb = self.get(name)
            _ = kb.vectors, kb.lexical
            return {**kb.info(), "status": "ok"}
        except KBError as e:
            return {"name": name, "status": "broken", "error": str(e)}

    def _warm_evidence(self, kb: KnowledgeBase) -> None:
        """Background, low priority: the KB's evidence sentences into the embedder's cache (/readyz
        shows how far it got)."""
        import time

        from service.answering.extractive import warm_evidence

        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            self.evidence[kb.name] = {"encoded": done, "total": total, "seconds": round(time.perf_counter() - t0)}

        try:
            n = warm_evidence(kb, stop=lambda: self.closing.is_set() or kb.is_stale(), progress=progress)
        except Exception:  # a cache warm-up must never take the server down
            log.exception("evidence warm-up of %s failed (answers are unaffected, only slower at first)", kb.name)
            return
        log.info("knowledge base %s: %d evidence sentences encoded in %.0f s", kb.name, n, time.perf_counter() - t0)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the background warm-ups and wait for them: a thread still inside the model when the
        interpreter exits aborts the process (onnxruntime's threads). Set ``closing`` first when the
        start-up warm-up may still be starting them."""
        self.closing.set()
        for t in self._threads:
            t.join(timeout)

    def _recover_uploads(self, kb: KnowledgeBase) -> None:
        from service.uploads import recover_uploads

        try:
            fixed = recover_uploads(self.settings, kb.name, kb.store.doc_hash)
        except OSError as e:  # a read-only KB has no uploads to put right
            log.debug("uploads of %s not checked: %s", kb.name, e)
            return
        if fixed:
            log.warning("knowledge base %s: %d uploaded file(s) of an interrupted upload put back as committed",
                        kb.name, fixed)

    def warm_up(self) -> None:
        """Open every KB and load its models; sets ``ready`` (or ``error``).

        One broken KB (unreadable manifest, model missing) must not take the others down: it is
        recorded in ``kb_errors`` (shown by /readyz) and the server is ready when at least one KB
        warmed up, or when there is none yet. Only when every KB failed is the server not ready."""
        names = self.names()
        for name in names:
            try:
                kb = self.get(name)
                kb.warm_up()
                warm_up_compliance(kb)  # bad compliance data: a start-up error, not a 500 later
                self._recover_uploads(kb)
                stored = kb.manifest.get("evidence")
                if kb.settings.evidence_vectors and not (isinstance(stored, dict) and stored.get("complete") is True) \
                        and _scores_sentences(kb):
                    log.warning("knowledge base %s has documents ingested before docqa stored their evidence "
                                "vectors: their first answers after each start embed passage sentences; `docqa "
                                "reindex --kb %s` stores them", name, name)
                if self.settings.warm_evidence and _scores_sentences(kb) and not self.closing.is_set():
                    t = threading.Thread(target=self._warm_evidence, args=(kb,), name=f"docqa-evidence-{name}",
                                         daemon=True)
                    self._threads.append(t)
                    t.start()
            except KBError as e:  # the operator can act on the message: no traceback needed
                log.error("knowledge base %s is not served: %s", name, e)
                self.kb_errors[name] = str(e)
            except Exception as e:  # reported by /readyz, never raised into the event loop
                log.exception("warm-up of knowledge base %s failed", name)
                self.kb_errors[name] = f"{type(e).__name__}: {e}"
        if names and len(self.kb_errors) == len(names):
            self.error = "; ".join(f"{n}: {m}" for n, m in self.kb_errors.items())
        else:
            self.ready = True


def _scores_sentences(kb: KnowledgeBase) -> bool:
    """Whether answers from ``kb`` embed passage sentences (the evidence warm-up pays that ahead): not when
    the reader answers and no LLM drafts need the guard's sentence similarity. Loads the reader now, so
    the first question does not pay for it."""
    from service.answering.reading import reader_for

    reader, _ = reader_for(kb.settings)
    return reader is None or str(getattr(kb.settings.llm_backend, "value", kb.settings.llm_backend)) != "extractive"
