"""A sentence-transformers model run without torch: its ``tokenizer.json`` through ``tokenizers``, its verified
ONNX export (``onnx_backend.py``) through onnxruntime, mean pooling and normalisation in numpy.

Once a model's export is verified, every later load of the default ``onnx`` / ``onnx-int8`` backends on
CPU takes this path: no torch, transformers or sentence-transformers import, no float32 weights read.
That is most of a process's memory and start-up: ``docqa ingest`` of a one-line file peaked at 1.3 GB
RSS on the torch-loaded path, ~0.5 GB of it torch and sentence-transformers' imports, another ~0.2 GB
the weights the ONNX session then replaced (bench/reports/scale.md). It only takes models whose module
chain it reproduces exactly — a Transformer, mean pooling that reads the prompt's tokens (as
sentence-transformers' does), an optional Normalize — and a fast tokenizer file; anything else loads
through sentence-transformers as before. tests/docqa/test_ort_encoder.py checks that both paths give
the same vectors and token states on real text.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

_MEAN_ONLY = {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
              "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
              "pooling_mode_lasttoken": False}
SMALL_TOKENS = 256  # a query or a few: one intra-op thread (as the torch path's OrtEncoder)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


class OrtTextEncoder:
    """``load`` returns None for a model this class cannot run exactly as sentence-transformers would."""

    def __init__(self, model_dir: Path, onnx_path: Path, *, dim: int, max_seq_length: int, prompts: tuple[str, str],
                 normalize: bool):
        from tokenizers import Tokenizer

        self.model_dir, self.onnx_path = model_dir, onnx_path
        self.dim, self.max_seq_length, self.prompts, self.normalize = dim, max_seq_length, prompts, normalize
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_seq_length)
        self.pad_id = self.tokenizer.token_to_id(_pad_token(model_dir)) or 0
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()
        self._small = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
        self._big = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path, onnx_path: Path) -> OrtTextEncoder | None:
        modules = _read(model_dir / "modules.json")
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules] if isinstance(modules, list) else []
        if kinds not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
            return None
        pooling_dir = model_dir / next(m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling"))
        pooling = _read(pooling_dir / "config.json")
        if not pooling or any(pooling.get(k, v if k != "pooling_mode_mean_tokens" else None) != v
                              for k, v in _MEAN_ONLY.items()) or pooling.get("include_prompt", True) is not True:
            return None
        st = _read(model_dir / "sentence_bert_config.json")
        if st.get("do_lower_case") or not (model_dir / "tokenizer.json").is_file():
            return None
        config = _read(model_dir / "config.json")
        max_len = int(st.get("max_seq_length") or config.get("max_position_embeddings") or 512)
        max_len = min(max_len, int(config.get("max_position_embeddings") or max_len))
        prompts = _read(model_dir / "config_sentence_transformers.json").get("prompts") or {}
        query = prompts.get("query") or ""
        doc = next((prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), "")
        dim = int(pooling.get("word_embedding_dimension") or config.get("hidden_size") or 0)
        if not dim:
            return None
        return cls(model_dir, onnx_path, dim=dim, max_seq_length=max_len, prompts=(query, doc),
                   normalize=kinds[-1] == "Normalize")

    # --- what Embedder needs ---
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def specials(self) -> int:
        return len(self.tokenizer.encode("x").ids) - self.count_tokens("x")

    def lengths(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Pooled (and normalised) vectors of ``texts``, prompts already on them, as one batch."""
        vecs, _, _, _ = self._run(texts)
        return vecs

    def token_states(self, texts: list[str]):
        """(vectors, last hidden states, attention mask, offsets) of one batch (``Embedder.encode_docs_tokens``)."""
        return self._run(texts)

    def _run(self, texts: list[str]):
        encs = self.tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        offsets = np.zeros((len(encs), width, 2), dtype=np.int64)
        for i, e in enumerate(encs):
            n = len(e.ids)
            ids[i, :n], mask[i, :n] = e.ids, 1
            offsets[i, :n] = e.offsets
        small = ids.size <= SMALL_TOKENS
        sess = self._session(1 if small else 0)
        with self._small if small else self._big:
            states = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]
        m = mask[:, :, None].astype(np.float32)
        vecs = (states * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        if self.normalize:
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs.astype(np.float32), states, mask.astype(bool), offsets

    def _session(self, threads: int):
        with self._lock:
            if threads not in self._sessions:
                from docqa.models.onnx_backend import cpu_session

                self._sessions[threads] = cpu_session(self.onnx_path, threads)
            return self._sessions[threads]


def _pad_token(model_dir: Path) -> str:
    tok = _read(model_dir / "tokenizer_config.json").get("pad_token") or _read(
        model_dir / "special_tokens_map.json").get("pad_token") or "<pad>"
    return tok.get("content", "<pad>") if isinstance(tok, dict) else str(tok)
