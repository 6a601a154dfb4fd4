"""ONNX Runtime under a sentence-transformers model: the same tokenizer, pooling and prompts, the
encoder's forward pass run by onnxruntime (``embed_backend: onnx``) or its dynamically quantised
int8 form (``onnx-int8``).

The Hugging Face encoder is exported once with torch's dynamo exporter (``torch.onnx.export(...,
dynamo=True)``: the TorchScript exporter mis-traces transformers 5's BERT, off by 0.3 in the hidden
states) and, for int8, quantised with ``onnxruntime.quantization.quantize_dynamic`` (int8 weights of
every MatMul, activations quantised on the fly). The files are cached in ``onnx/`` beside the model
when that folder is writable, else under ``models_dir()/onnx-cache/``; a cached export is verified
against torch on real Chinese and English text before first use and rejected below the bounds
(fp32: every cosine >= 0.9999; int8: mean >= 0.98, min >= 0.95), so a broken export never serves.
The encoder module is swapped into the loaded SentenceTransformer, so everything above it (the
single-pass unit vectors included) runs unchanged. A model whose export fails verification (or a
Python without onnxruntime) runs on torch instead, with one warning; the rejection is recorded so
it is not re-tried at every start.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from docqa.errors import Unavailable

FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}
BOUNDS = {"onnx": (0.9999, 0.9999), "onnx-int8": (0.98, 0.95)}  # (mean, min) cosine vs torch
RECORD = "docqa_onnx.json"


class OnnxExportError(Unavailable):
    pass


def cpu_session(path: str | Path, threads: int):
    """An onnxruntime CPU session of ``threads`` intra-op threads that never busy-waits: the one way docqa
    opens its ONNX models (encoders and the reader), so concurrent requests share the cores instead of
    spinning on them (bench/load.py)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def cache_dir(model_dir: Path) -> Path:
    beside = model_dir / "onnx"
    if os.access(model_dir, os.W_OK):
        return beside
    from docqa.models import models_dir

    digest = hashlib.sha1(str(model_dir.resolve()).encode()).hexdigest()[:10]
    return models_dir() / "onnx-cache" / f"{model_dir.name}-{digest}"


def verified_path(model_dir: Path, backend: str) -> Path | None:
    """The ONNX file of ``backend`` when an earlier load exported and verified it, else None (no export)."""
    path = cache_dir(model_dir) / FILES[backend]
    return path if path.is_file() and _read_record(path.parent).get(backend, {}).get("verified") else None


def ensure_exported(st_model, model_dir: Path, backend: str) -> Path:
    """The verified ONNX file for ``backend``, exported (and quantised) on first use."""
    out = cache_dir(model_dir)
    path = out / FILES[backend]
    rec = _read_record(out)
    if path.is_file() and rec.get(backend, {}).get("verified"):
        return path
    if rec.get(backend, {}).get("rejected"):  # verified once and found wanting: do not export at every start
        raise OnnxExportError(rec[backend]["rejected"])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        fp32 = Path(tmp) / FILES["onnx"]
        _export(st_model, fp32)
        final = fp32
        if backend == "onnx-int8":
            final = Path(tmp) / FILES["onnx-int8"]
            _quantize(fp32, final)
        mean, low = verify(st_model, final)
        want_mean, want_min = BOUNDS[backend]
        if not (mean >= want_mean and low >= want_min):
            why = (f"the {backend} export of {model_dir} embeds unlike torch (cosine mean {mean:.5f}, min {low:.5f}; "
                   f"needs {want_mean}/{want_min})")
            rec[backend] = {"rejected": why}
            (out / RECORD).write_text(json.dumps(rec, indent=2))
            raise OnnxExportError(why)
        for f in Path(tmp).iterdir():
            if f.name.startswith(final.name):  # the model and its external-data file
                shutil.move(str(f), out / f.name)
    rec[backend] = {"verified": True, "mean_cosine": mean, "min_cosine": low}
    (out / RECORD).write_text(json.dumps(rec, indent=2))
    return path


def _quantize(src: Path, dst: Path) -> None:
    """int8 weights for every MatMul, activations quantised at run time (onnxruntime's dynamic
    quantisation). Its advice to pre-process the graph (aimed at static quantisation) goes to the
    root logger; it is kept off the user's screen, and the root logger as it was."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers  # logging.warning() may have run basicConfig()


def _read_record(out: Path) -> dict:
    try:
        return json.loads((out / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _export(st_model, path: Path) -> None:
    import torch
    from transformers import AutoModel

    src = st_model[0].auto_model
    enc = AutoModel.from_pretrained(src.name_or_path, attn_implementation="eager").eval()

    class _Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=torch.zeros_like(input_ids)).last_hidden_state

    import logging
    import warnings

    ex = st_model.tokenizer(["passage: 劳动合同 export", "passage: a"], padding=True, return_tensors="pt")
    b, s = torch.export.Dim("batch"), torch.export.Dim("seq", max=int(st_model.max_seq_length))
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed", per-op notes: not the user's business
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Encoder(enc), (ex["input_ids"], ex["attention_mask"]), str(path), dynamo=True,
                              input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                              dynamic_shapes=({0: b, 1: s}, {0: b, 1: s}), verbose=False)
    finally:
        quiet.setLevel(level)


VERIFY = ["劳动合同期限一年以上不满三年的，试用期不得超过二个月。", "2019年国庆节：10月1日至7日放假调休，共7天。",
          "How long are database backups kept? Thirty days.", "SEV1 事故须在 15 分钟内确认。",
          "用人单位自用工之日起即与劳动者建立劳动关系。", "The quick brown fox jumps over the lazy dog."]


def verify(st_model, onnx_path: Path) -> tuple[float, float]:
    """(mean, min) cosine of document embeddings through ``onnx_path`` vs the torch encoder."""
    ref = st_model.encode_document(VERIFY, normalize_embeddings=True)
    enc = st_model[0].model
    try:
        st_model[0].model = OrtEncoder(onnx_path, getattr(enc, "config", None))
        got = st_model.encode_document(VERIFY, normalize_embeddings=True)
    finally:
        st_model[0].model = enc
    cos = np.sum(ref * got, axis=1)
    return float(cos.mean()), float(cos.min())


def install(st_model, model_dir: Path, backend: str) -> None:
    """Swap ``backend``'s ONNX encoder into ``st_model`` (exported and verified on first use)."""
    path = ensure_exported(st_model, model_dir, backend)
    st_model[0].model = OrtEncoder(path, getattr(st_model[0].model, "config", None))


def _ort_encoder_class():
    import torch

    class OrtEncoder(torch.nn.Module):
        """Stands in for the Hugging Face encoder inside sentence-transformers' Transformer module:
        called with input_ids / attention_mask tensors, returns an object with ``last_hidden_state``.
        Small inputs (a query or a few) run on a one-thread session: intra-op threads only add waiting
        there; anything larger (a document's segments at ingest) uses every core."""

        SMALL_TOKENS = 256  # e.g. 4 queries of 64 tokens

        def __init__(self, path: Path, config=None):
            super().__init__()
            self.path = str(path)
            self.config = config
            self._sessions: dict[int, object] = {}
            self._lock = threading.Lock()
            # Concurrent requests must not each start a full set of intra-op threads: on a busy server
            # 16 runs x N threads on N cores spent most of their CPU switching (bench/load.py). One-thread
            # runs go N at a time; an all-cores run goes alone among all-cores runs.
            self._small = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
            self._big = threading.Lock()

        def _session(self, threads: int):
            with self._lock:
                if threads not in self._sessions:
                    self._sessions[threads] = cpu_session(self.path, threads)
                return self._sessions[threads]

        def forward(self, input_ids=None, attention_mask=None, **_):
            from transformers.modeling_outputs import BaseModelOutput

            ids = input_ids.cpu().numpy().astype(np.int64)
            mask = attention_mask.cpu().numpy().astype(np.int64)
            small = ids.size <= self.SMALL_TOKENS
            sess = self._session(1 if small else 0)
            with self._small if small else self._big:
                out = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]
            return BaseModelOutput(last_hidden_state=torch.from_numpy(out))

    return OrtEncoder


def OrtEncoder(path: Path, config=None):  # noqa: N802 - a class made on first use (torch is imported lazily)
    return _ort_encoder_class()(path, config)
