"""Small checks on a committed knowledge base, shared by the ingest tests."""

from __future__ import annotations

from docqa.kb import KnowledgeBase
from docqa.search import search


def keyword_finds(settings, kb_name: str, token: str) -> bool:
    """Whether a keyword search of ``kb_name``'s current generation finds ``token`` in some unit's text."""
    kb = KnowledgeBase.open(kb_name, settings)
    try:
        return any(token in h.text for h in search(kb, token, 5, mode="keyword"))
    finally:
        kb.close()
