"""Chunkers: a document's blocks -> segment units. Chosen per KB by ``Settings.chunker``.

``chunk_document`` gives the segments alone; ``document_units`` (``levels.py``) adds the article
and sentence levels and every unit's key info: that is what ingestion indexes.
"""

from __future__ import annotations

from ..document import Document
from ..settings import Chunker, Settings
from ..units import Unit


def boundary_scorer(settings: Settings):
    """The KB's boundary scorer for the semantic chunkers (models load lazily, once per process)."""
    if settings.chunker == Chunker.NSP:
        from .nsp import NSPScorer

        if not settings.nsp_model:
            raise ValueError("chunker 'nsp' needs nsp_model (an HF id or a directory); train one from your "
                             "corpus with `docqa finetune nsp`, or use chunker 'embedding'")
        return NSPScorer(settings.nsp_model, temperature=settings.nsp_temperature, device=settings.device)
    if settings.chunker == Chunker.EMBEDDING:
        from ..kb.knowledge_base import shared_embedder
        from .embedding import EmbeddingScorer

        return EmbeddingScorer(shared_embedder(settings.embed_model, settings.device, settings.embed_batch_size))
    raise ValueError(f"chunker {settings.chunker.value!r} uses no boundary scorer")


def chunk_document(doc: Document, settings: Settings) -> list[Unit]:
    """Segment units of ``doc`` with the KB's chunker."""
    if settings.chunker == Chunker.FIXED:
        from .fixed import chunk_blocks

        return chunk_blocks(doc, max_tokens=settings.chunk_max_tokens, min_tokens=settings.chunk_min_tokens)
    from .semantic import chunk_semantic

    threshold = settings.nsp_threshold if settings.chunker == Chunker.NSP else settings.similarity_threshold
    return chunk_semantic(doc, boundary_scorer(settings), threshold=threshold,
                          max_tokens=settings.chunk_max_tokens, min_tokens=settings.chunk_min_tokens)


def document_units(doc: Document, settings: Settings, *, generate=None) -> list[Unit]:
    """All units of ``doc`` (article, segments, sentences per ``settings.unit_levels``) with key info."""
    from .levels import build_units

    return build_units(doc, chunk_document(doc, settings), settings, generate=generate)
