"""Keyword engines over pre-tokenized text (see ``docqa.text.tokenize``).

Both engines index ``" ".join(tokenize(unit.lexical_input()))`` with a whitespace analyzer and
answer a disjunction of the query's distinct terms scored by BM25, so tantivy (embedded default)
and Elasticsearch (scale-out) rank the same way. ``open_lexical`` picks one from the settings.
"""

from __future__ import annotations

from pathlib import Path

from docqa.text.tokenize import query_terms, tokenize
from docqa.units import Unit

MAX_QUERY_TERMS = 48  # a pasted paragraph as a query must not become a 500-clause disjunction


def index_text(unit: Unit) -> str:
    return " ".join(tokenize(unit.lexical_input()))


def terms_for_query(query: str) -> list[str]:
    return query_terms(query)[:MAX_QUERY_TERMS]


def open_lexical(backend: str, path: Path, *, es_url: str | None = None, es_index: str | None = None,
                 readonly: bool = False):
    if backend == "tantivy":
        from docqa.lexical.tantivy_index import TantivyIndex

        return TantivyIndex(path, readonly=readonly)
    if backend == "elasticsearch":
        from docqa.lexical.elastic import ElasticIndex

        if not es_url:
            raise ValueError("lexical_backend=elasticsearch needs DOCQA_ES_URL (or es_url in docqa.yaml)")
        return ElasticIndex(es_url, es_index or path.name)
    raise ValueError(f"unknown lexical backend {backend!r} (tantivy | elasticsearch)")
