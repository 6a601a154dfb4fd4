"""Dense vectors of a KB in FAISS, keyed by unit id (IndexIDMap2, inner product on unit vectors).

``flat`` is exact and needs no training; ``flat_fp16`` (the default) scans the same way over
float16 codes, half the bytes and ~3x faster since a flat scan is memory-bound; ``hnsw`` trades a
little recall for sub-linear search on millions of units. Flat kinds support ``remove_ids``
through IndexIDMap2 (HNSW is rebuilt without the removed ids), so a changed document's old vectors
are removed, not left to go stale.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from docqa.errors import UserError
from docqa.settings import VectorIndexKind


class VectorIndex:
    def __init__(self, index, dim: int):
        self.index = index
        self.dim = dim

    @classmethod
    def create(cls, dim: int, kind: VectorIndexKind | str = VectorIndexKind.FLAT) -> VectorIndex:
        import faiss

        try:
            kind = VectorIndexKind(kind)
        except ValueError:
            names = " | ".join(k.value for k in VectorIndexKind)
            raise UserError(f"unknown vector index kind {kind!r} ({names})") from None
        if kind is VectorIndexKind.FLAT:
            base = faiss.IndexFlatIP(dim)
        elif kind is VectorIndexKind.FLAT_FP16:
            base = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        else:
            base = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efSearch = 128
        return cls(faiss.IndexIDMap2(base), dim)

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        import faiss

        index = faiss.read_index(str(path))
        return cls(index, index.d)

    def save(self, path: str | Path) -> None:
        import faiss

        tmp = f"{path}.tmp"
        faiss.write_index(self.index, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if vecs.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vecs.shape[1]}, the index {self.dim}")
        self.index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids) -> int:
        import faiss

        ids = np.asarray(list(ids), dtype=np.int64)
        if len(ids) == 0:
            return 0
        try:
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        except RuntimeError:  # HNSW cannot remove in place: rebuild it without those ids
            return self._rebuild_without(ids)

    def _rebuild_without(self, ids: np.ndarray) -> int:
        import faiss

        all_ids = faiss.vector_to_array(self.index.id_map)
        vecs = self.index.index.reconstruct_n(0, len(all_ids))
        keep = ~np.isin(all_ids, ids)
        fresh = VectorIndex.create(self.dim, VectorIndexKind.HNSW)
        fresh.add(all_ids[keep], vecs[keep])
        self.index = fresh.index
        return int((~keep).sum())

    def search(self, vecs: np.ndarray, k: int, selector=None) -> list[list[tuple[int, float]]]:
        """The ``k`` nearest units per query vector; ``selector``: a FAISS ID selector that restricts the
        search to allowed units (``KnowledgeBase.allowed``), so the top k are the best k among those, not
        the best k overall with the others dropped afterwards. The search parameters that carry it are made
        here, per call: FAISS's ID map swaps the selector inside them while it searches, so parameters
        shared by two threads crash or let other units through (selectors themselves are read-only)."""
        if len(self) == 0:
            return [[] for _ in range(len(vecs))]
        x = np.ascontiguousarray(vecs, dtype=np.float32)
        if selector is None:
            scores, ids = self.index.search(x, min(k, len(self)))
        else:
            import faiss

            scores, ids = self.index.search(x, min(k, len(self)), params=faiss.SearchParameters(sel=selector))
        return [[(int(i), float(s)) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
                for row_i, row_s in zip(ids, scores, strict=True)]


class SegmentVectors:
    """The vectors of a generation's segments (``docqa/kb/store.py``): one FAISS index per segment, searched
    together. Each index also holds the vectors of its segment's dead units (documents a newer segment
    replaced or deleted) until a merge drops them; searches skip them with an ID selector, and a search
    restricted to allowed units (``params``) never lists a dead one anyway."""

    def __init__(self, parts: list[tuple[VectorIndex, np.ndarray]], dim: int):
        """``parts``: (index, its dead unit ids) per segment, oldest first."""
        self.parts = [p for p, _ in parts]
        self.dim = dim
        self._dead = [np.asarray(d, dtype=np.int64) for _, d in parts]
        self._skip = [self._skip_selector(d) for d in self._dead]

    @staticmethod
    def _skip_selector(dead: np.ndarray):
        if not len(dead):
            return None
        import faiss

        batch = faiss.IDSelectorBatch(dead)
        sel = faiss.IDSelectorNot(batch)
        sel._batch = batch  # the inner selector must live as long as the one that points at it
        return sel

    def __len__(self) -> int:
        return sum(len(p) - len(d) for p, d in zip(self.parts, self._dead, strict=True))

    @property
    def index(self):
        """The one FAISS index of a single-segment generation (tests and tools that read vectors back)."""
        if len(self.parts) != 1:
            raise ValueError(f"{len(self.parts)} segments: use reconstruct(unit_id)")
        return self.parts[0].index

    def reconstruct(self, unit_id: int) -> np.ndarray:
        for part, dead in zip(reversed(self.parts), reversed(self._dead), strict=True):
            if unit_id in dead:
                continue
            try:
                return part.index.reconstruct(int(unit_id))
            except RuntimeError:  # not in this part
                continue
        raise KeyError(unit_id)

    def search(self, vecs: np.ndarray, k: int, selector=None) -> list[list[tuple[int, float]]]:
        """As ``VectorIndex.search`` over every segment (``selector``: the allowed units, which never
        include a dead one; without it, each segment skips its dead units)."""
        if len(self.parts) == 1:
            return self.parts[0].search(vecs, k, selector if selector is not None else self._skip[0])
        merged: list[list[tuple[int, float]]] = [[] for _ in range(len(vecs))]
        for part, skip in zip(self.parts, self._skip, strict=True):
            for row, hits in zip(merged, part.search(vecs, k, selector if selector is not None else skip),
                                 strict=True):
                row.extend(hits)
        return [sorted(row, key=lambda h: -h[1])[:k] for row in merged]
