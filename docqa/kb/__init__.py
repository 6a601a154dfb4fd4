"""Knowledge bases on disk: ``KnowledgeBase`` to read, ``KBWriter`` to change."""

from docqa.kb.knowledge_base import KnowledgeBase
from docqa.kb.manifest import KBError, kb_path, list_kbs, validate_name
from docqa.kb.writer import KBWriter
from docqa.models.embedder import shared_embedder

__all__ = ["KBError", "KBWriter", "KnowledgeBase", "kb_path", "list_kbs", "shared_embedder", "validate_name"]
