"""A knowledge base on disk: open it to search, or open a writer to change it.

Layout of ``$DOCQA_HOME/<name>/``::

    manifest.json        current generation, build settings (models, chunker), counts
    gen-000007/          store.sqlite (docs, units), vectors.faiss, lexical/ (tantivy)
    .write.lock          held by the one writer

Readers only ever see a committed generation. See ``writer.py`` for how a new one is made.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..embedder import Embedder
from ..settings import Settings
from .manifest import KBError, gen_dir, read_manifest, validate_name
from .store import UnitStore

_EMBEDDERS: dict[tuple[str, str], Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def shared_embedder(model: str, device: str, batch_size: int = 64, backend: str = "torch") -> Embedder:
    """One embedder per (model, device, backend) in a process, shared by every KB that uses it."""
    backend = getattr(backend, "value", backend)
    with _EMBEDDERS_LOCK:
        key = (model, device, backend)
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = Embedder(model, device=device, batch_size=batch_size, backend=backend)
        return _EMBEDDERS[key]


def embedder_for(settings: Settings) -> Embedder:
    """The shared embedder of a KB's settings (model, device, batch size, backend)."""
    return shared_embedder(settings.embed_model, settings.device, settings.embed_batch_size, settings.embed_backend)


def kb_path(settings: Settings, name: str) -> Path:
    return settings.home / validate_name(name)


def list_kbs(settings: Settings) -> list[str]:
    if not settings.home.is_dir():
        return []
    return sorted(p.name for p in settings.home.iterdir() if (p / "manifest.json").is_file())


class KnowledgeBase:
    """A read view of one committed generation."""

    def __init__(self, name: str, root: Path, manifest: dict, settings: Settings):
        self.name = name
        self.root = root
        self.manifest = manifest
        self.settings = settings.with_build(manifest.get("build", {}))
        self.generation = int(manifest["generation"])
        gdir = gen_dir(root, self.generation)
        self.store = UnitStore(gdir / "store.sqlite", readonly=True)
        self._gdir = gdir
        self._vectors = None
        self._lexical = None
        self._lock = threading.Lock()
        self.embedder = embedder_for(self.settings)

    @classmethod
    def open(cls, name: str, settings: Settings) -> KnowledgeBase:
        root = kb_path(settings, name)
        manifest = read_manifest(root)
        if int(manifest.get("generation", 0)) == 0:
            raise KBError(f"knowledge base {name!r} is empty: nothing has been committed yet")
        return cls(name, root, manifest, settings)

    def is_stale(self) -> bool:
        """True when a writer has committed a newer generation since this view was opened."""
        try:
            return int(read_manifest(self.root).get("generation", 0)) != self.generation
        except KBError:
            return True

    @property
    def vectors(self):
        if self._vectors is None:
            with self._lock:
                if self._vectors is None:
                    from ..vector_index import VectorIndex

                    self._vectors = VectorIndex.load(self._gdir / "vectors.faiss")
        return self._vectors

    @property
    def lexical(self):
        if self._lexical is None:
            with self._lock:
                if self._lexical is None:
                    from ..lexical import open_lexical

                    s = self.settings
                    self._lexical = open_lexical(s.lexical_backend.value, self._gdir / "lexical",
                                                 es_url=s.es_url, es_index=self.manifest.get("es_index"))
        return self._lexical

    def warm_up(self) -> None:
        """Load everything a query needs, so the first request is not the slow one."""
        self.embedder.warm_up()
        _ = self.vectors, self.lexical
        self.embedder.encode_queries(["warm up"])

    def info(self) -> dict:
        m = self.manifest
        return {"name": self.name, "generation": self.generation, "counts": m.get("counts", {}),
                "build": m.get("build", {}), "created_at": m.get("created_at"), "updated_at": m.get("updated_at")}

    def close(self) -> None:
        self.store.close()
