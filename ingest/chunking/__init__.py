"""Chunkers: a document's blocks -> segment units. Chosen per KB by ``Settings.chunker``."""

from __future__ import annotations

from ..document import Document
from ..settings import Chunker, Settings
from ..units import Unit


def chunk_document(doc: Document, settings: Settings) -> list[Unit]:
    """Segment units of ``doc`` with the KB's chunker."""
    if settings.chunker == Chunker.FIXED:
        from .fixed import chunk_blocks

        return chunk_blocks(doc, max_tokens=settings.chunk_max_tokens, min_tokens=settings.chunk_min_tokens)
    raise ValueError(f"unknown chunker {settings.chunker!r}")
