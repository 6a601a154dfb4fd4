"""embed_backend onnx / onnx-int8: the encoder exported once, verified against torch, cached.

A tiny random sentence-transformers model exercises export, verification, the cache and the
single-pass token states through onnxruntime; the real multilingual-e5-small checks that int8
quantisation keeps embeddings close (the retrieval bench measures what that costs in recall).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime (the `onnx` extra) is not installed")
pytest.importorskip("onnxscript", reason="onnxscript (the `onnx` extra) is not installed")

from ingest.embedder import Embedder  # noqa: E402

TEXTS = ["the contract term is two years", "backups are kept for thirty days", "a", "hello world " * 20]


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory) -> Path:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
    from test_embed_train import make_tiny_st

    return Path(make_tiny_st(tmp_path_factory.mktemp("tiny")))


def test_onnx_embeds_like_torch_and_is_exported_once(tiny_st: Path) -> None:
    ref = Embedder(str(tiny_st), device="cpu").encode_docs(TEXTS)
    onnx = Embedder(str(tiny_st), device="cpu", backend="onnx")
    got = onnx.encode_docs(TEXTS)
    assert np.all(np.sum(ref * got, axis=1) > 0.9999)
    rec = json.loads((tiny_st / "onnx" / "docqa_onnx.json").read_text())
    assert rec["onnx"]["verified"] and rec["onnx"]["min_cosine"] > 0.9999
    stamp = (tiny_st / "onnx" / "model.onnx").stat().st_mtime_ns
    again = Embedder(str(tiny_st), device="cpu", backend="onnx")
    np.testing.assert_allclose(again.encode_queries(TEXTS[:2]), onnx.encode_queries(TEXTS[:2]), atol=1e-6)
    assert (tiny_st / "onnx" / "model.onnx").stat().st_mtime_ns == stamp  # the cache was used


def test_token_states_through_onnx_match_torch(tiny_st: Path) -> None:
    torch_states = dict(Embedder(str(tiny_st), device="cpu").encode_docs_tokens(TEXTS))
    onnx_states = dict(Embedder(str(tiny_st), device="cpu", backend="onnx").encode_docs_tokens(TEXTS))
    for i in range(len(TEXTS)):
        a, b = torch_states[i], onnx_states[i]
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_allclose(a.states, b.states, atol=1e-4)


def test_int8_stays_close_to_float32_on_the_real_model() -> None:
    from ingest.models import E5_SMALL, built_model_dir

    if not (built_model_dir(E5_SMALL) / "config.json").is_file():
        pytest.skip("multilingual-e5-small is not built: run `docqa models build` (install.sh does)")
    texts = ["劳动合同期限一年以上不满三年的，试用期不得超过二个月。", "Database backups are kept for thirty days.",
             "国务院办公厅关于2019年部分节假日安排的通知"]
    ref = Embedder(E5_SMALL, device="cpu").encode_docs(texts)
    got = Embedder(E5_SMALL, device="cpu", backend="onnx-int8").encode_docs(texts)
    cos = np.sum(ref * got, axis=1)
    assert cos.mean() > 0.98 and cos.min() > 0.95, cos


def test_a_missing_runtime_is_a_clear_model_error(tiny_st: Path) -> None:
    """A Python where onnxruntime cannot be imported gets ModelNotAvailable naming the extra."""
    import subprocess
    import sys

    code = ("import sys, sentence_transformers\n"
            "sys.modules['onnxruntime'] = None  # import onnxruntime now raises ImportError\n"
            "from ingest.embedder import Embedder, ModelNotAvailable\n"
            f"e = Embedder({str(tiny_st)!r}, device='cpu', backend='onnx-int8')\n"
            "try:\n    e.warm_up()\nexcept ModelNotAvailable as err:\n    print('MNA', err)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert "MNA embed_backend 'onnx-int8' needs onnxruntime" in r.stdout, r.stdout + r.stderr
