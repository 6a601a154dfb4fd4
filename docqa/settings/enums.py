"""The choices settings take, as enums (a string in docqa.yaml or DOCQA_* becomes its member)."""

from __future__ import annotations

from enum import Enum, StrEnum

__all__ = ["Chunker", "EmbedInput", "KeyphraseCandidates", "OCRMode", "VectorIndexKind", "EmbedBackend",
           "LexicalBackend", "ComplianceMode", "GuardAction", "RedactMode", "ScreenMode", "LLMBackend",
           "LLMFallback"]


class Chunker(StrEnum):
    """How a document is cut into segments (see ingest/chunking and bench/reports/segmentation.md).

    fixed: paragraphs packed up to the length limit; no model, fastest, cuts blind to topic.
    embedding: cut where adjacent paragraphs' embeddings are dissimilar; reuses the KB's embedder.
    nsp: cut where a BERT next-sentence-prediction model says B does not follow A; needs a model
    (``docqa finetune nsp`` trains one from your corpus), the most accurate boundaries.
    """

    FIXED = "fixed"
    EMBEDDING = "embedding"
    NSP = "nsp"


class EmbedInput(StrEnum):
    """What is embedded per unit: level-1 key info, level-2 text, or both in one vector."""

    KEYINFO = "keyinfo"
    TEXT = "text"
    BOTH = "both"


class KeyphraseCandidates(StrEnum):
    """Chinese keyphrase candidates: jieba TF-IDF (fast) or TextRank (POS-filtered, ~5x slower)."""

    TFIDF = "tfidf"
    TEXTRANK = "textrank"


class OCRMode(StrEnum):
    """OCR of PDF pages (ingest/loaders/ocr.py): where the text layer is unusable, on every page, or never.
    Image files are always recognised (OCR is the only way to read them)."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


class VectorIndexKind(str, Enum):
    FLAT = "flat"  # exact float32 inner product
    # Exhaustive like flat, vectors stored as float16: half the memory and disk, and 2.8x faster per
    # query because a flat scan is memory-bound (100k x 384 dims, 1 query: 4.7 ms vs 13.0 ms on the
    # 2-core box). Cosine scores move by ~1e-3, below any ranking decision. The default.
    FLAT_FP16 = "flat_fp16"
    HNSW = "hnsw"  # approximate, sub-linear; for millions of units


class EmbedBackend(StrEnum):
    """What runs the embedding model's encoder on CPU (docqa/models/onnx_backend.py). ``torch``: the model
    as loaded; ``onnx``: the same float32 graph in onnxruntime; ``onnx-int8``: its weights quantised
    to int8 (dynamic quantisation). Exported once and cached beside the model, verified against torch.
    On CUDA the torch backend is always used."""

    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"


class LexicalBackend(str, Enum):
    TANTIVY = "tantivy"
    ELASTICSEARCH = "elasticsearch"


class ComplianceMode(StrEnum):
    """What the compliance filter (service/compliance) does with a draft answer. Every mode but OFF
    also applies the blocklist and writes the audit log."""

    OFF = "off"  # no filter, no audit log: only for KBs whose answers need no review
    GUARD = "guard"  # the draft must be grounded in the passages it was given (pick for open answers)
    SNAP = "snap"  # the user only ever gets an approved reply (pick for scripted service desks)


class GuardAction(StrEnum):
    FALLBACK = "fallback"  # any unsupported sentence -> the stage's fallback reply (strict)
    DROP = "drop"  # unsupported sentences are removed; fallback only when none is left


class RedactMode(StrEnum):
    OFF = "off"
    MASK = "mask"  # personal data in answers, citations and search hits is masked (138****5678)
    REFUSE = "refuse"  # an answer holding personal data becomes the fallback; citations and hits are masked


class ScreenMode(StrEnum):
    OFF = "off"
    FLAG = "flag"  # flagged documents are ingested and reported (summary, docqa docs)
    REJECT = "reject"  # flagged documents are reported and not ingested


class LLMBackend(StrEnum):
    """Who writes the answer (service/llm). ``extractive`` quotes evidence sentences and needs no LLM;
    ``openai`` calls any OpenAI-compatible server (``vllm serve ... --enable-lora``: the adapter is the
    model name); ``transformers`` and ``vllm`` run the model in-process (CPU/CUDA; GPU engine)."""

    EXTRACTIVE = "extractive"
    OPENAI = "openai"
    TRANSFORMERS = "transformers"
    VLLM = "vllm"


class LLMFallback(StrEnum):
    """What the user gets when the LLM fails: the extractive answer from the same evidence (cited,
    grounded), or only the notice that the answering model is unavailable plus the passages."""

    EXTRACTIVE = "extractive"
    NOTICE = "notice"
