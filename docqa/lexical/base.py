"""What a keyword engine is, and the terms every engine indexes and is asked for.

Both engines index ``index_text(unit)`` (``" ".join(tokenize(unit.lexical_input()))``) with a whitespace
analyzer and answer a disjunction of ``terms_for_query(query)`` scored by BM25, so tantivy and
Elasticsearch rank the same way.
"""

from __future__ import annotations

from typing import Protocol

from docqa.text.tokenize import query_terms, tokenize
from docqa.units import Unit

MAX_QUERY_TERMS = 48  # a pasted paragraph as a query must not become a 500-clause disjunction


def index_text(unit: Unit) -> str:
    return " ".join(tokenize(unit.lexical_input()))


def terms_for_query(query: str) -> list[str]:
    return query_terms(query)[:MAX_QUERY_TERMS]


class LexicalIndex(Protocol):
    """A keyword engine over one KB generation's units."""

    def add(self, units: list[Unit]) -> None: ...

    def delete(self, doc_ids: list[str]) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def __len__(self) -> int: ...

    def search(self, terms: list[str], k: int, *, levels: list[str] | None = None,
               doc_ids: frozenset[str] | None = None) -> list[tuple[int, float]]:
        """The ``k`` best units for any of ``terms`` by BM25 as [(unit_id, score)]; ``levels``: only units of
        these levels; ``doc_ids``: only units of these documents (it restricts, it does not score)."""
        ...
