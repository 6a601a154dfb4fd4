"""Every vector index kind: search finds the right id, removal removes it, save/load round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from docqa.vector_index import VectorIndex


def _unit(rows: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "flat_fp16", "hnsw"])
def test_add_search_remove_save_load(kind, tmp_path):
    x = _unit(300)
    ids = np.arange(1000, 1300, dtype=np.int64)
    index = VectorIndex.create(32, kind)
    index.add(ids, x)
    top = index.search(x[[7, 150]], 3)
    assert [row[0][0] for row in top] == [1007, 1150]
    assert abs(top[0][0][1] - 1.0) < 2e-3  # fp16 codes keep cosine within ~1e-3
    assert index.remove([1007, 1008, 99999]) == 2 and len(index) == 298
    assert all(i not in (1007, 1008) for i, _ in index.search(x[[7]], 10)[0])
    index.save(tmp_path / "v.faiss")
    again = VectorIndex.load(tmp_path / "v.faiss")
    assert len(again) == 298 and again.search(x[[150]], 1)[0][0][0] == 1150


def test_dimension_mismatch_is_a_clear_error():
    index = VectorIndex.create(32, "flat_fp16")
    with pytest.raises(ValueError, match="dimension 16"):
        index.add(np.arange(2), _unit(2, dim=16))


def test_unknown_kind():
    with pytest.raises(ValueError, match="flat_fp16"):
        VectorIndex.create(8, "ivf")


@pytest.mark.parametrize("kind", ["flat", "flat_fp16"])
def test_a_big_segment_searched_in_parallel_pieces_finds_exactly_what_one_scan_does(kind, monkeypatch):
    """#24: a flat segment of more than SHARD_ROWS rows is split and its pieces searched on several threads;
    the hits (ids and scores), with and without a selector and with dead units, are those of one scan."""
    import faiss

    from docqa import vector_index
    from docqa.vector_index import SegmentVectors

    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(3000, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(3000, dtype=np.int64) * 3 + 11
    whole = VectorIndex.create(32, kind)
    whole.add(ids, vecs)
    dead = ids[::7]
    monkeypatch.setattr(vector_index, "SHARD_ROWS", 500)
    one = SegmentVectors([(whole, dead)], 32, threads=1)
    many = SegmentVectors([(whole, dead)], 32, threads=4)
    assert [len(p) for p in many.shards[0]] == [750] * 4 and len(one.shards[0]) == 1
    assert len(many) == len(one) == 3000 - len(dead)
    queries = vecs[:25] + 0.1 * rng.normal(size=(25, 32)).astype(np.float32)
    allowed = faiss.IDSelectorBatch(np.setdiff1d(ids[1::5], dead))  # as KnowledgeBase.allowed: live units only
    for sel in (None, allowed):
        a, b = one.search(queries, 10, sel), many.search(queries, 10, sel)
        assert [[i for i, _ in row] for row in a] == [[i for i, _ in row] for row in b]
        assert np.allclose([[s for _, s in row] for row in a], [[s for _, s in row] for row in b])
        assert not {i for row in b for i, _ in row} & set(dead.tolist())
    assert np.allclose(many.reconstruct(int(ids[1])), one.reconstruct(int(ids[1])))
    got = np.concatenate([i for i, _ in many.batches()])
    assert sorted(got.tolist()) == sorted(ids.tolist())


def test_an_hnsw_segment_is_not_split():
    from docqa.vector_index import SegmentVectors

    h = VectorIndex.create(8, "hnsw")
    h.add(np.arange(10, dtype=np.int64), np.eye(10, 8, dtype=np.float32))
    assert h.split(4) == [h] and len(SegmentVectors([(h, np.zeros(0, np.int64))], 8, threads=4).shards[0]) == 1


def test_an_hnsw_index_searches_with_the_recall_default_even_when_written_with_an_older_one(tmp_path):
    import faiss

    from docqa.vector_index import HNSW_EF_SEARCH

    h = VectorIndex.create(8, "hnsw")
    assert faiss.downcast_index(h.index.index).hnsw.efSearch == HNSW_EF_SEARCH
    h.add(np.arange(10, dtype=np.int64), np.eye(10, 8, dtype=np.float32))
    faiss.downcast_index(h.index.index).hnsw.efSearch = 128  # what docqa wrote before
    h.save(tmp_path / "v.faiss")
    assert faiss.downcast_index(VectorIndex.load(tmp_path / "v.faiss").index.index).hnsw.efSearch == HNSW_EF_SEARCH


def test_a_query_scans_on_one_openmp_thread_and_a_batch_on_all():
    """A busy server's idle OpenMP threads spin-wait: one query's scan (which FAISS does not split) must not
    start them; a batch of queries (an evaluation, a bench) is split over all of them. The setting is per
    calling thread, so a request thread's single-query search leaves other threads' batches alone."""
    import threading

    import faiss

    from docqa.vector_index import OMP_MIN_QUERIES, search_threads

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((500, 16)).astype(np.float32)
    index = VectorIndex.create(16, "flat_fp16")
    index.add(np.arange(500), vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    seen = {}

    def one(name, n):
        index.search(vecs[:n], 5)
        seen[name] = faiss.omp_get_max_threads()

    one("batch", OMP_MIN_QUERIES)
    t = threading.Thread(target=one, args=("query", 1))
    t.start()
    t.join()
    assert seen == {"query": 1, "batch": search_threads()}
    assert faiss.omp_get_max_threads() == search_threads()  # the query thread's setting stayed its own
