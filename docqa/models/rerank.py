"""Cross-encoder reranking of the fused candidates (optional: ``rerank_model``, ``rerank_top_n``).

A cross-encoder reads the query and a passage together and scores how well the passage answers it:
slower than the bi-encoder (one forward pass per candidate), so it only reorders the ``rerank_top_n``
best fused candidates, and sharper. Any sentence-transformers ``CrossEncoder`` works: one trained by
``docqa finetune rerank`` from the KB's own encoder, or an HF cross-encoder such as a bge-reranker
where one is available. Scores are probabilities (sigmoid of the single logit), so a KB that reranks
refuses on the reranker's top score (``rerank_refusal_threshold``, calibrated by
bench/calibrate_refusal.py) instead of the evidence score.

A model that fails to load does not stop answering: the KB view's ``reranker_error`` says why (``/readyz``
shows it as degraded) and the answer is marked as given without reranking.
"""

from __future__ import annotations

import threading

import numpy as np

from docqa.errors import Unavailable

_lock = threading.Lock()


class RerankerUnavailable(Unavailable):
    """The configured reranker could not be loaded (the reason is the message)."""


class Reranker:
    def __init__(self, model: str, device: str = "auto", max_length: int = 512, batch_size: int = 32):
        """``max_length`` caps the model's own limit (a reranker trained on 256 tokens reads 256)."""
        from sentence_transformers import CrossEncoder

        from docqa.models.embedder import pick_device, resolve_model_path

        self.name = model
        self.batch_size = batch_size
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            self.model = CrossEncoder(resolve_model_path(model), num_labels=1, device=pick_device(device))
            own = self.model.max_seq_length
            self.model.max_seq_length = min(own, max_length) if own else max_length
        except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
            raise RerankerUnavailable(f"rerank_model {model!r} could not be loaded ({type(e).__name__}: "
                                      f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
        if getattr(self.model, "num_labels", 1) != 1:
            raise RerankerUnavailable(f"rerank_model {model!r} has {self.model.num_labels} outputs; a reranker "
                                      "has one relevance score")

    def score(self, query: str, texts: list[str]) -> np.ndarray:
        """Relevance of each text to ``query``, in [0, 1]."""
        with _lock:  # one forward batch at a time: no oversubscribed CPU
            return relevance(self.model, query, texts, self.batch_size)


def relevance(model, query: str, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """A CrossEncoder's relevance of each text to ``query``, in [0, 1] (sigmoid of its one logit): the
    scores serving reranks by, and what `docqa finetune rerank` measures its held-out table with."""
    if not texts:
        return np.zeros(0, dtype=np.float32)
    import torch

    with torch.inference_mode():
        out = model.predict([(query, t) for t in texts], batch_size=batch_size, activation_fn=torch.nn.Sigmoid(),
                            show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float32).reshape(-1)


def load_reranker(model: str, device: str = "auto") -> Reranker:
    """The reranker ``model``, loaded once per process (``docqa.models.cache``). Raises
    ``RerankerUnavailable`` when it cannot be loaded; the failure is not cached here (a served KB
    generation keeps it for its life, so the next generation tries again)."""
    from docqa.models.cache import MODELS

    return MODELS.get("reranker", (model, device), lambda: Reranker(model, device))
