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

# recall@10 of hnsw (M 32) against the exact scan, bench/reports/kb_size*.md: efSearch 128 .95 at 310k units,
# 512 .989-.993 from 100k to 1M units at 2.5-4.6 ms
HNSW_EF_SEARCH = 512
OMP_MIN_QUERIES = 8  # a search of fewer query vectors runs on one OpenMP thread (VectorIndex.search)


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
            base.hnsw.efSearch = HNSW_EF_SEARCH
        return cls(faiss.IndexIDMap2(base), dim)

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        import faiss

        index = faiss.read_index(str(path))
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else None
        if isinstance(inner, faiss.IndexHNSW) and inner.hnsw.efSearch < HNSW_EF_SEARCH:
            inner.hnsw.efSearch = HNSW_EF_SEARCH  # an index written with the old default (128)
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

    def batches(self, size: int = 65536):
        """``(unit ids, float32 vectors)`` of every vector, ``size`` rows at a time (merges, benches)."""
        import faiss

        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        inner = self.index.index
        for start in range(0, len(ids), size):
            n = min(size, len(ids) - start)
            yield ids[start: start + n], inner.reconstruct_n(start, n)

    def split(self, n: int) -> list[VectorIndex]:
        """This flat index as ``n`` indexes of consecutive rows (codes copied as they are: the same scores),
        to be searched in parallel; itself for a kind that cannot be split (hnsw) or ``n`` < 2."""
        import faiss

        inner = faiss.downcast_index(self.index.index)
        if n < 2 or not isinstance(inner, (faiss.IndexFlat, faiss.IndexScalarQuantizer)) or len(self) < n:
            return [self]
        codes = faiss.vector_to_array(inner.codes)
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        size, total = inner.code_size, len(self)
        out = []
        for k in range(n):
            lo, hi = k * total // n, (k + 1) * total // n
            sub = _empty_like(inner)
            mapped = faiss.IndexIDMap2(sub)  # faiss's Python layer keeps ``sub`` alive with it
            faiss.copy_array_to_vector(codes[lo * size: hi * size], sub.codes)
            sub.ntotal = hi - lo
            faiss.copy_array_to_vector(ids[lo:hi], mapped.id_map)
            mapped.ntotal = hi - lo
            mapped.construct_rev_map()  # over ntotal rows: after it is set
            out.append(VectorIndex(mapped, self.dim))
        return out

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
        import faiss

        x = np.ascontiguousarray(vecs, dtype=np.float32)
        # OpenMP threads of this calling thread only (the setting is per thread): a query or a few scan on one,
        # since FAISS splits the work by query and the idle threads spin-wait (a 20k-unit search on a busy
        # 2-core server: 0.6 CPU-ms on one thread, 4-25 on two); a big segment is split into pieces instead
        faiss.omp_set_num_threads(1 if len(x) < OMP_MIN_QUERIES else search_threads())
        if selector is None:
            scores, ids = self.index.search(x, min(k, len(self)))
        else:
            scores, ids = self.index.search(x, min(k, len(self)), params=faiss.SearchParameters(sel=selector))
        return [[(int(i), float(s)) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
                for row_i, row_s in zip(ids, scores, strict=True)]


def _empty_like(inner):
    """An empty flat index of the same kind, metric and dimension as ``inner``."""
    import faiss

    if isinstance(inner, faiss.IndexScalarQuantizer):
        return faiss.IndexScalarQuantizer(inner.d, inner.sq.qtype, inner.metric_type)
    return faiss.IndexFlat(inner.d, inner.metric_type)


SHARD_ROWS = 200_000  # a segment's flat index is searched in parallel pieces of about this many rows


def search_threads() -> int:
    """How many threads a single search may use: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


_POOL: list = []


def _pool():
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=search_threads(), thread_name_prefix="docqa-faiss"))
    return _POOL[0]


class SegmentVectors:
    """The vectors of a generation's segments (``docqa/kb/store.py``): one FAISS index per segment, searched
    together. Each index also holds the vectors of its segment's dead units (documents a newer segment
    replaced or deleted) until a merge drops them; searches skip them with an ID selector, and a search
    restricted to allowed units (``params``) never lists a dead one anyway."""

    def __init__(self, parts: list[tuple[VectorIndex, np.ndarray]], dim: int, *, threads: int | None = None):
        """``parts``: (index, its dead unit ids) per segment, oldest first. A flat index of more than
        ``SHARD_ROWS`` rows is split into up to ``threads`` pieces (default: the CPUs), searched in parallel:
        a flat scan is memory-bound, so one query's 1M-row scan takes 45 ms on one core and 20 ms on two."""
        threads = search_threads() if threads is None else threads
        self.dim = dim
        self._dead = [np.asarray(d, dtype=np.int64) for _, d in parts]
        self._skip = [self._skip_selector(d) for d in self._dead]
        self.shards = [p.split(min(threads, len(p) // SHARD_ROWS)) for p, _ in parts]
        self._rows = [len(p) for p, _ in parts]

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
        return sum(rows - len(d) for rows, d in zip(self._rows, self._dead, strict=True))

    def batches(self):
        """``(unit ids, float32 vectors)`` of every stored vector, dead ones included (benches)."""
        for pieces in self.shards:
            for piece in pieces:
                yield from piece.batches()

    def reconstruct(self, unit_id: int) -> np.ndarray:
        for pieces, dead in zip(reversed(self.shards), reversed(self._dead), strict=True):
            if unit_id in dead:
                continue
            for piece in pieces:
                try:
                    return piece.index.reconstruct(int(unit_id))
                except RuntimeError:  # not in this piece
                    continue
        raise KeyError(unit_id)

    def search(self, vecs: np.ndarray, k: int, selector=None) -> list[list[tuple[int, float]]]:
        """As ``VectorIndex.search`` over every segment (``selector``: the allowed units, which never
        include a dead one; without it, each segment skips its dead units)."""
        jobs = [(piece, selector if selector is not None else skip)
                for pieces, skip in zip(self.shards, self._skip, strict=True) for piece in pieces]
        if len(jobs) == 1:
            return jobs[0][0].search(vecs, k, jobs[0][1])
        if sum(len(piece) for piece, _ in jobs) >= SHARD_ROWS:  # FAISS lets go of the GIL while it scans
            results = list(_pool().map(lambda job: job[0].search(vecs, k, job[1]), jobs))
        else:
            results = [piece.search(vecs, k, sel) for piece, sel in jobs]
        merged: list[list[tuple[int, float]]] = [[] for _ in range(len(vecs))]
        for hits in results:
            for row, part_hits in zip(merged, hits, strict=True):
                row.extend(part_hits)
        return [sorted(row, key=lambda h: -h[1])[:k] for row in merged]
