"""Boundary scores from embedding similarity: cosine of adjacent pieces' embeddings.

Every distinct piece is embedded once (batched, with the KB's own embedder, already loaded for
indexing), so a document costs one embedding pass over its text, the same as indexing it.

Pick it when no NSP model is trained yet: it needs nothing beyond the embedder. It sees each
side alone, so it misses boundaries between passages that share vocabulary, and a weak embedder
for the language (all-MiniLM-L6-v2 on Chinese) gives flat scores; see
bench/reports/segmentation.md for how it compares with NSP.
"""

from __future__ import annotations

import numpy as np


class EmbeddingScorer:
    """``score_pairs`` -> cosine(first, second) in [-1, 1]; ``embedder`` is an ``docqa.models.embedder.Embedder``."""

    def __init__(self, embedder):
        self.embedder = embedder

    def score_pairs(self, firsts: list[str], seconds: list[str]) -> np.ndarray:
        if len(firsts) != len(seconds):
            raise ValueError("score_pairs needs as many second texts as first texts")
        if not firsts:
            return np.zeros(0, dtype=np.float32)
        texts = list(dict.fromkeys([*firsts, *seconds]))
        pos = {t: i for i, t in enumerate(texts)}
        vecs = self.embedder.encode_docs(texts)
        a = vecs[[pos[t] for t in firsts]]
        b = vecs[[pos[t] for t in seconds]]
        return np.einsum("ij,ij->i", a, b).astype(np.float32)
