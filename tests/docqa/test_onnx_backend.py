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

pytest.importorskip("onnxruntime", reason="onnxruntime (a docqa dependency) is not installed")
pytest.importorskip("onnxscript", reason="onnxscript (a docqa dependency) is not installed")

from docqa.models.embedder import Embedder

pytestmark = pytest.mark.slow  # left out of `make test-fast`

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
    from docqa.models import E5_SMALL, built_model_dir

    if not (built_model_dir(E5_SMALL) / "config.json").is_file():
        pytest.skip("multilingual-e5-small is not built: run `docqa models build` (install.sh does)")
    texts = ["劳动合同期限一年以上不满三年的，试用期不得超过二个月。", "Database backups are kept for thirty days.",
             "国务院办公厅关于2019年部分节假日安排的通知"]
    ref = Embedder(E5_SMALL, device="cpu").encode_docs(texts)
    got = Embedder(E5_SMALL, device="cpu", backend="onnx-int8").encode_docs(texts)
    cos = np.sum(ref * got, axis=1)
    assert cos.mean() > 0.98 and cos.min() > 0.95, cos


def test_a_missing_runtime_falls_back_to_torch_with_a_warning(tiny_st: Path) -> None:
    """A Python where onnxruntime cannot be imported embeds on torch, and says so once."""
    import subprocess
    import sys

    code = ("import sys, sentence_transformers\n"
            "sys.modules['onnxruntime'] = None  # import onnxruntime now raises ImportError\n"
            "from docqa.models.embedder import Embedder\n"
            f"e = Embedder({str(tiny_st)!r}, device='cpu', backend='onnx-int8')\n"
            "v = e.encode_docs(['backups are kept for thirty days'])\n"
            "print('BACKEND', e.backend, v.shape)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert "BACKEND torch (1, 32)" in r.stdout, r.stdout + r.stderr
    assert "embed_backend onnx-int8 unavailable" in r.stderr and "pip install onnxruntime" in r.stderr


def test_a_rejected_export_is_not_retried_and_torch_serves(tiny_st: Path, tmp_path: Path) -> None:
    """When an earlier start found an export embedding unlike torch (the record says so), later starts
    neither export again nor fail: the embedder runs on torch, with the same vectors as plain torch."""
    import shutil

    model = tmp_path / "rejected"
    shutil.copytree(tiny_st, model, ignore=shutil.ignore_patterns("onnx"))
    (model / "onnx").mkdir()
    why = "the onnx-int8 export embeds unlike torch (cosine mean 0.90000, min 0.80000; needs 0.98/0.95)"
    (model / "onnx" / "docqa_onnx.json").write_text(json.dumps({"onnx-int8": {"rejected": why}}))
    e = Embedder(str(model), device="cpu", backend="onnx-int8")
    e.warm_up()
    assert e.backend == "torch"
    assert sorted(p.name for p in (model / "onnx").iterdir()) == ["docqa_onnx.json"]  # nothing exported
    np.testing.assert_allclose(e.encode_docs(TEXTS[:2]), Embedder(str(model), device="cpu").encode_docs(TEXTS[:2]),
                               atol=1e-5)
