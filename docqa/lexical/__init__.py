"""Keyword engines over pre-tokenized text (see ``docqa.text.tokenize``): tantivy (embedded default)
and Elasticsearch (scale-out), behind ``LexicalIndex`` (``base.py``). ``open_lexical`` picks one."""

from __future__ import annotations

from pathlib import Path

from docqa.errors import UserError
from docqa.lexical.base import MAX_QUERY_TERMS, LexicalIndex, index_text, terms_for_query
from docqa.settings import LexicalBackend

__all__ = ["MAX_QUERY_TERMS", "LexicalIndex", "index_text", "open_lexical", "terms_for_query"]


def open_lexical(backend: LexicalBackend, path: Path, *, es_url: str | None = None, es_index: str | None = None,
                 readonly: bool = False) -> LexicalIndex:
    backend = LexicalBackend(backend)
    if backend is LexicalBackend.TANTIVY:
        from docqa.lexical.tantivy_index import TantivyIndex

        return TantivyIndex(path, readonly=readonly)
    from docqa.lexical.elastic import ElasticIndex

    if not es_url:
        raise UserError("lexical_backend=elasticsearch needs DOCQA_ES_URL (or es_url in docqa.yaml)")
    return ElasticIndex(es_url, es_index or path.name)
