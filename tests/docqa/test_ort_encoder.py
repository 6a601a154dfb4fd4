"""The torch-free path of the default embedder (docqa/models/ort_encoder.py) against the sentence-transformers
path it replaces, on the same verified ONNX export: the same vectors, token states, offsets and token counts on
real Chinese and English text (one text a batch on both sides, so the int8 activations are quantised alike), and
a process that embeds on it never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from docqa.models.embedder import Embedder

pytestmark = pytest.mark.slow  # left out of `make test-fast`
TEXTS = ["劳动合同期限一年以上不满三年的，试用期不得超过二个月。", "How long are database backups kept? Thirty days.",
         "  前后有空格的句子。  ", "第十九条 劳动合同期限三个月以上不满一年的，试用期不得超过一个月；" * 30, "a",
         "SEV1 事故须在 15 分钟内确认，并通知值班经理 (on-call manager)。"]


@pytest.fixture(scope="module")
def pair(e5_model: str):
    st = Embedder(e5_model, device="cpu", backend="onnx-int8", allow_lean=False)
    st.warm_up()  # exports and verifies on first use, as every install's first load does
    if st.backend != "onnx-int8":
        pytest.skip(f"the onnx-int8 export is not available here ({st.backend} in use)")
    lean = Embedder(e5_model, device="cpu", backend="onnx-int8")
    assert lean.lean and not st.lean
    return st, lean


def test_the_same_vectors_tokens_and_states_as_sentence_transformers(pair) -> None:
    st, lean = pair
    assert (lean.dim, lean.max_seq_length, lean.doc_prompt(), lean.max_doc_tokens) == \
        (st.dim, st.max_seq_length, st.doc_prompt(), st.max_doc_tokens)
    for text in TEXTS:
        assert lean.count_tokens(text) == st.count_tokens(text), text
        for kind in ("query", "document"):
            a, b = lean._encode([text], kind), st._encode([text], kind)
            assert np.allclose(a, b, atol=1e-5), (text, kind, float(np.abs(a - b).max()))
        (_, x), = lean.encode_docs_tokens([text])
        (_, y), = st.encode_docs_tokens([text])
        assert np.array_equal(x.offsets, y.offsets), text
        assert np.allclose(x.states, y.states, atol=1e-4) and np.allclose(x.vector, y.vector, atol=1e-5), text
    many = lean.encode_docs(TEXTS * 3)  # the token-bounded batches give each text its own vector back
    assert np.allclose(many[: len(TEXTS)], many[len(TEXTS): 2 * len(TEXTS)], atol=5e-3)
    assert np.allclose(np.linalg.norm(many, axis=1), 1, atol=1e-5)


def test_embedding_on_the_lean_path_never_imports_torch(pair, e5_model: str) -> None:
    code = ("import sys, json; from docqa.models.embedder import Embedder\n"
            f"e = Embedder({e5_model!r}, device='auto', backend='onnx-int8')\n"
            "v = e.encode_docs(['劳动合同期限一年以上不满三年的。', 'backups'])\n"
            "print(json.dumps({'lean': e.lean, 'torch': 'torch' in sys.modules, "
            "'st': 'sentence_transformers' in sys.modules, 'shape': list(v.shape)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"lean": True, "torch": False, "st": False, "shape": [2, 384]}, got
