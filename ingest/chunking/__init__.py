"""Chunkers: a document's blocks -> segment units. Chosen per KB by ``Settings.chunker``.

``chunk_document`` gives the segments alone; ``document_units`` (``levels.py``) adds the article
and sentence levels and every unit's key info: that is what ingestion indexes.
"""

from __future__ import annotations

from docqa.document import Document
from docqa.errors import UserError
from docqa.settings import Chunker, Settings
from docqa.units import Unit
from ingest.chunking.fixed import sections_of

__all__ = ["boundary_scorer", "chunk_document", "chunk_limits", "document_units", "sections_of"]


def boundary_scorer(settings: Settings):
    """The KB's boundary scorer for the semantic chunkers (models load lazily, once per process)."""
    if settings.chunker == Chunker.NSP:
        from docqa.models.nsp import NSPScorer

        if not settings.nsp_model:
            raise UserError("chunker 'nsp' needs nsp_model (an HF id or a directory); train one from your "
                             "corpus with `docqa finetune nsp`, or use chunker 'embedding'")
        return NSPScorer(settings.nsp_model, temperature=settings.nsp_temperature, device=settings.device)
    if settings.chunker == Chunker.EMBEDDING:
        from docqa.models.embedder import embedder_for
        from ingest.chunking.embedding import EmbeddingScorer

        return EmbeddingScorer(embedder_for(settings))
    raise ValueError(f"chunker {settings.chunker.value!r} uses no boundary scorer")


def chunk_limits(settings: Settings):
    """(max tokens, count function) of a KB's chunks, measured with its embedding model's own
    tokenizer and capped at what the model reads (window less special tokens and prompt), so no
    chunk is silently truncated when it is embedded."""
    from docqa.models.embedder import embedder_for

    emb = embedder_for(settings)
    return min(settings.chunk_max_tokens, emb.max_doc_tokens), emb.count_tokens


def chunk_document(doc: Document, settings: Settings) -> list[Unit]:
    """Segment units of ``doc`` with the KB's chunker."""
    max_tokens, count = chunk_limits(settings)
    if settings.chunker == Chunker.FIXED:
        from ingest.chunking.fixed import chunk_blocks

        return chunk_blocks(doc, max_tokens=max_tokens, min_tokens=settings.chunk_min_tokens, count=count)
    from ingest.chunking.semantic import chunk_semantic

    threshold = settings.nsp_threshold if settings.chunker == Chunker.NSP else settings.similarity_threshold
    return chunk_semantic(doc, boundary_scorer(settings), threshold=threshold,
                          max_tokens=max_tokens, min_tokens=settings.chunk_min_tokens, count=count)


def document_units(doc: Document, settings: Settings, *, generate=None) -> list[Unit]:
    """All units of ``doc`` (article, segments, sentences per ``settings.unit_levels``) with key info."""
    from ingest.chunking.levels import build_units

    return build_units(doc, chunk_document(doc, settings), settings, generate=generate)
