"""A knowledge base on disk: open it to search, or open a writer to change it.

Layout of ``$DOCQA_HOME/<name>/``::

    manifest.json        current generation, its segments, build settings (models, chunker), counts
    gen-000007/          segments/ (s000005.sqlite + s000005.faiss, ...: docs, units and their vectors,
                         see store.py), lexical/ (tantivy), evidence/ (evidence.py), generation.json
    .write.lock          held by the one writer

(A generation written before segments has one ``store.sqlite`` and ``vectors.faiss`` instead.)
Readers only ever see a committed generation. See ``writer.py`` for how a new one is made.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from docqa.filters import DocFilter
from docqa.kb.manifest import (
    KBDamaged,
    KBError,
    built_settings,
    gen_dir,
    generation_file_label,
    kb_path,
    read_manifest,
    segment_files,
)
from docqa.kb.store import UnitStore
from docqa.models.embedder import embedder_for
from docqa.settings import LexicalBackend, Settings

_ALLOWED_CACHE = 256  # resolved filters kept per KB view (each: a set of doc ids and an array of unit ids)


@dataclass(frozen=True, eq=False)
class Allowed:
    """What a filter lets through in one KB generation."""

    doc_ids: frozenset[str]
    unit_ids: np.ndarray  # int64
    _selector: list = field(default_factory=list, repr=False)  # the FAISS ID selector, built once

    def faiss_selector(self):
        """A FAISS ID selector of the allowed units: read-only, shared by concurrent searches. (Never share a
        ``SearchParameters``: FAISS's ID map swaps the selector inside it while it searches, so two threads
        searching with one parameters object crash or let other units through; ``VectorIndex.search``
        makes one per call.)"""
        if not self._selector:
            import faiss

            self._selector.append(faiss.IDSelectorBatch(self.unit_ids))
        return self._selector[0]


def with_tuned(settings: Settings, manifest: dict) -> Settings:
    """``settings`` with the values ``docqa eval calibrate`` stored in the manifest (``tuned``), except
    where the configuration sets the key explicitly (docqa.yaml, DOCQA_*): an operator's word wins."""
    tuned = manifest.get("tuned") or {}
    values = tuned.get("values") if isinstance(tuned, dict) else None
    if not isinstance(values, dict):
        return settings
    from pydantic import ValidationError

    try:
        return settings.with_overrides({k: v for k, v in values.items()
                                        if k in type(settings).model_fields and k not in settings.model_fields_set})
    except ValidationError as e:
        raise KBDamaged(f"manifest records a calibrated value docqa cannot use ({e.errors()[0].get('msg', e)}); "
                        "run `docqa eval calibrate` again") from None


class KnowledgeBase:
    """A read view of one committed generation."""

    def __init__(self, name: str, root: Path, manifest: dict, settings: Settings):
        self.name = name
        self.root = root
        self.manifest = manifest
        self.settings = with_tuned(built_settings(settings, manifest, root), manifest)
        self.generation = int(manifest["generation"])
        gdir = gen_dir(root, self.generation)
        self._gdir = gdir
        self.store = self._open_store()
        self._vectors = None
        self._lexical = None
        self._evidence = None
        self._lock = threading.Lock()
        self.embedder = embedder_for(self.settings)
        self._docs: list[dict] | None = None
        self._allowed: OrderedDict = OrderedDict()  # DocFilter -> Allowed | None, most recent last
        self._reranker: tuple | None = None  # (Reranker | None, why not | None), once per view
        self._owns_store = True

    @classmethod
    def open(cls, name: str, settings: Settings) -> KnowledgeBase:
        root = kb_path(settings, name)
        manifest = read_manifest(root)
        if int(manifest.get("generation", 0)) == 0:
            raise KBError(f"knowledge base {name!r} is empty: nothing has been committed yet")
        return cls(name, root, manifest, settings)

    def _damaged(self, what: str, why: object) -> KBDamaged:
        return KBDamaged(f"knowledge base {self.name!r}: {what} of generation {self.generation} ({self._gdir.name}) "
                         f"{why}; run `docqa repair --kb {self.name}` to find the newest complete generation")

    def _expected_units(self) -> int | None:
        units = (self.manifest.get("counts") or {}).get("units") if isinstance(self.manifest.get("counts"), dict) \
            else None
        return units if isinstance(units, int) and not isinstance(units, bool) else None

    def _open_store(self) -> UnitStore:
        """The generation's segments as one store, checked cheaply: present, databases, not truncated."""
        import sqlite3

        if not self._gdir.is_dir():
            raise self._damaged("the folder", "is missing")
        self._segments = segment_files(self._gdir, self.manifest)
        for _name, path, _ in self._segments:
            if not path.is_file():
                raise self._damaged(f"the document store ({generation_file_label(path)})", "is missing")
        try:
            store = UnitStore([p for _, p, _ in self._segments])
        except sqlite3.Error as e:
            raise self._damaged("the document store", f"cannot be opened ({e})") from None
        try:
            for alias, (_, path, _) in zip(store.aliases, self._segments, strict=True):
                pages = store.conn.execute(f"PRAGMA {alias}.page_count").fetchone()[0]
                expected = pages * store.conn.execute(f"PRAGMA {alias}.page_size").fetchone()[0]
                if path.stat().st_size < expected:
                    raise self._damaged(f"the document store ({generation_file_label(path)})",
                                        f"is truncated ({path.stat().st_size} of {expected} bytes)")
            store.counts()
        except sqlite3.Error as e:
            store.close()
            raise self._damaged("the document store", f"is damaged ({e})") from None
        except KBError:
            store.close()
            raise
        return store

    def is_stale(self) -> bool:
        """True when a writer has committed a newer generation, or ``docqa eval calibrate`` tuned a
        setting, since this view was opened."""
        try:
            m = read_manifest(self.root)
            return int(m.get("generation", 0)) != self.generation or m.get("tuned") != self.manifest.get("tuned")
        except KBError:
            return True

    @property
    def vectors(self):
        if self._vectors is None:
            with self._lock:
                if self._vectors is None:
                    self._vectors = self._load_vectors()
        return self._vectors

    def _load_vectors(self):
        from docqa.vector_index import SegmentVectors, VectorIndex

        parts = []
        for i, (_, _, path) in enumerate(self._segments):
            what = f"the vector index ({generation_file_label(path)})"
            if not path.is_file():
                raise self._damaged(what, "is missing")
            try:
                part = VectorIndex.load(path)
            except Exception as e:  # faiss raises RuntimeError with its C++ message on a damaged file
                raise self._damaged(what, f"cannot be read ({str(e).strip().splitlines()[0][:200]})") from None
            rows = self.store.segment_unit_count(i)
            if len(part) != rows:
                raise self._damaged(what, f"holds {len(part)} vectors for {rows} units")
            parts.append((part, self.store.dead_unit_ids(i)))
        dim = parts[0][0].dim if parts else int((self.manifest.get("embed") or {}).get("dim") or self.embedder.dim)
        vectors = SegmentVectors(parts, dim)
        expected = self._expected_units()
        if expected is not None and len(vectors) != expected:
            raise self._damaged("the vector index", f"holds {len(vectors)} vectors for {expected} units")
        return vectors

    @property
    def evidence(self):
        """The evidence vectors stored at ingest (``docqa/kb/evidence.py``), memory-mapped; empty for a KB
        ingested before they existed (answers then embed passage sentences as they come)."""
        if self._evidence is None:
            with self._lock:
                if self._evidence is None:
                    from docqa.kb.evidence import SUBDIR, EvidenceVectors

                    dim = int((self.manifest.get("embed") or {}).get("dim") or self.embedder.dim)
                    self._evidence = EvidenceVectors(self._gdir / SUBDIR, dim)
        return self._evidence

    @property
    def lexical(self):
        if self._lexical is None:
            with self._lock:
                if self._lexical is None:
                    from docqa.lexical import open_lexical

                    s = self.settings
                    if s.lexical_backend is LexicalBackend.TANTIVY and not (self._gdir / "lexical").is_dir():
                        raise self._damaged("the keyword index", "is missing")
                    try:
                        lexical = open_lexical(s.lexical_backend, self._gdir / "lexical",
                                               es_url=s.es_url, es_index=self.manifest.get("es_index"),
                                               readonly=True)
                        n = len(lexical) if s.lexical_backend is LexicalBackend.TANTIVY else None
                    except ValueError as e:  # tantivy's errors on a damaged index
                        raise self._damaged("the keyword index", f"cannot be read ({str(e)[:200]})") from None
                    expected = self._expected_units()
                    if n is not None and expected is not None and n != expected:
                        raise self._damaged("the keyword index", f"holds {n} entries for {expected} units")
                    self._lexical = lexical
        return self._lexical

    def docs(self) -> list[dict]:
        """Every document's metadata (no text), ordered by source; read once per view."""
        if self._docs is None:
            self._docs = self.store.list_docs()
        return self._docs

    def allowed(self, flt: DocFilter | None) -> Allowed | None:
        """The documents and units ``flt`` lets a query see, or None when it lets every one through
        (the common case costs nothing at search time). Cached per view: a generation never changes."""
        if flt is None or flt.is_open:
            return None
        with self._lock:
            if flt in self._allowed:
                self._allowed.move_to_end(flt)
                return self._allowed[flt]
        docs = self.docs()
        passing = [d["doc_id"] for d in docs if flt.allows(d)]
        result = None if len(passing) == len(docs) else Allowed(
            frozenset(passing), np.asarray(self.store.unit_ids_of_docs(passing), dtype=np.int64))
        with self._lock:
            self._allowed[flt] = result
            while len(self._allowed) > _ALLOWED_CACHE:
                self._allowed.popitem(last=False)
        return result

    def with_settings(self, over: dict) -> KnowledgeBase:
        """A view of the same generation with ``over`` laid over its settings (validated): what a sweep of
        ``docqa eval run --set`` answers with. It shares the generation's read-only store and indexes
        (loaded once, here) and has its own lock, filter cache, embedder and reranker."""
        _ = self.vectors, self.lexical, self.evidence
        view = copy.copy(self)
        view.settings = self.settings.with_overrides(over)
        view._lock = threading.Lock()
        view._allowed = OrderedDict()
        view._reranker = None
        view._owns_store = False  # closing the view leaves the store to this view
        view.embedder = embedder_for(view.settings)
        return view

    def reranker(self):
        """This view's cross-encoder (``docqa.models.rerank``): None when none is configured or it cannot be
        loaded (``reranker_error`` then says why). Tried once per view: a generation keeps its outcome,
        and the view of the next generation (or another ``rerank_model``) tries again."""
        if self._reranker is None:
            with self._lock:
                if self._reranker is None:
                    self._reranker = self._load_reranker()
        return self._reranker[0]

    @property
    def reranker_error(self) -> str | None:
        """Why the configured reranker is not in use (None: none configured, or it loaded)."""
        if not self.settings.rerank_model:
            return None
        self.reranker()
        return self._reranker[1]

    def _load_reranker(self) -> tuple:
        if not self.settings.rerank_model:
            return None, None
        from docqa.models.rerank import RerankerUnavailable, load_reranker

        try:
            return load_reranker(self.settings.rerank_model, self.settings.device), None
        except RerankerUnavailable as e:
            return None, str(e)

    def warm_up(self) -> None:
        """Load everything a query needs, so the first request is not the slow one: the model and its
        sessions, the indexes, and the keyword tokenizer (jieba loads its dictionary on first use: ~0.9 CPU-s
        that the first answer after a start used to pay)."""
        from docqa.lexical import terms_for_query

        self.embedder.warm_up()
        _ = self.vectors, self.lexical, self.evidence
        self.embedder.prime()
        terms_for_query("预热 warm up")

    def info(self) -> dict:
        m = self.manifest
        return {"name": self.name, "generation": self.generation, "counts": m.get("counts", {}),
                "build": m.get("build", {}), "created_at": m.get("created_at"), "updated_at": m.get("updated_at")}

    def close(self) -> None:
        if self._owns_store:
            self.store.close()


