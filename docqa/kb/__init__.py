"""Knowledge bases on disk: ``KnowledgeBase`` to read, ``KBWriter`` to change."""

from docqa.kb.knowledge_base import KnowledgeBase, kb_path, list_kbs, shared_embedder
from docqa.kb.manifest import KBError, validate_name
from docqa.kb.writer import KBWriter

__all__ = ["KBError", "KBWriter", "KnowledgeBase", "kb_path", "list_kbs", "shared_embedder", "validate_name"]
