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
