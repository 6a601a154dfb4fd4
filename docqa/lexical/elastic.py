"""The scale-out keyword engine: one Elasticsearch index per knowledge base.

It indexes exactly what tantivy indexes (``index_text``: jieba/Latin tokens joined by spaces, a
whitespace analyzer, BM25) and answers the same query (a ``bool`` of ``term`` should-clauses over
``terms_for_query``), so switching engines changes where the index lives, not the ranking.
Pick it when the KB outgrows one machine's disk or several service replicas must share one keyword
index; keep tantivy (the default) otherwise: it needs no server and is part of the atomic commit.

Consistency, honestly: Elasticsearch is a server, not a file in the KB's generation directory, so
its writes cannot take part in the manifest swap. This class narrows the gap as far as it can:

- ``add`` and ``delete`` only buffer; nothing reaches the server before ``commit()``, which the KB
  writer calls just before it swaps the manifest. An exception or Ctrl-C before that (the common
  case: a long ingest interrupted) leaves the index untouched, like tantivy.
- A crash *between* ``commit()`` and the manifest swap leaves the index one step ahead: units the
  store does not have (harmless: ``docqa/search.py`` drops lexical hits whose unit_id the store
  lacks, and the next writer reuses those ids, overwriting them, because the document ``_id`` is the
  unit id), and documents deleted here but still in the previous generation (they are found by
  dense search only until they are re-ingested).
- Readers of an older generation (a running server before it reopens the KB) search the newest
  index state; unit ids of deleted documents can be reused, so such a reader may show a wrong
  passage for a moment. The service reopens a stale KB on its next request.

``docqa reindex`` writes a fresh index and drops the old one after its commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from docqa.lexical.base import index_text
from docqa.units import Unit

_BULK_CHUNK = 1000

MAPPING = {
    "settings": {
        # One shard keeps BM25's document frequencies global, so scores match tantivy's; shard
        # the index (and search with dfs_query_then_fetch) only past tens of millions of units.
        "number_of_shards": 1,
    },
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "unit_id": {"type": "keyword"},
            "doc_id": {"type": "keyword"},
            "level": {"type": "keyword"},
            # pre-tokenized by docqa.text.tokenize: split on spaces only, never re-analyzed
            "body": {"type": "text", "analyzer": "whitespace", "index_options": "freqs"},
        },
    },
}


class ElasticIndex:
    """The ``TantivyIndex`` interface over an Elasticsearch index named ``index`` at ``url``.

    Args:
        url: the cluster, e.g. ``http://127.0.0.1:9200`` (``DOCQA_ES_URL``).
        index: the index name, recorded in the KB manifest (``es_index``) when the KB is created.
    """

    def __init__(self, url: str, index: str):
        self.url = url
        self.index = index
        self._client = None
        self._ops: list[tuple[str, list]] = []  # ("index", rows) | ("delete", doc_ids), in call order

    @property
    def client(self):
        if self._client is None:
            try:
                from elasticsearch import Elasticsearch
            except ImportError:
                raise ImportError("lexical_backend=elasticsearch needs the elasticsearch client: "
                                  "pip install 'docqa[es]'") from None
            self._client = Elasticsearch(self.url, request_timeout=60, max_retries=3, retry_on_timeout=True)
        return self._client

    # --- writes: buffered until commit ---
    def add(self, units: list[Unit]) -> None:
        rows = [(u.unit_id, u.doc_id, u.level.value, index_text(u)) for u in units]
        self._buffer("index", rows)

    def delete(self, doc_ids: list[str]) -> None:
        self._buffer("delete", list(doc_ids))

    def _buffer(self, kind: str, items: list) -> None:
        if not items:
            return
        if self._ops and self._ops[-1][0] == kind:
            self._ops[-1][1].extend(items)
        else:
            self._ops.append((kind, items))

    def commit(self) -> None:
        """Send the buffered changes in call order (a replaced document: delete, then add) and
        refresh, so the next search sees them."""
        ops, self._ops = self._ops, []
        with self._errors("write to"):
            self._ensure_index()
            for kind, items in ops:
                if kind == "delete":
                    self.client.delete_by_query(index=self.index, query={"terms": {"doc_id": items}},
                                                refresh=True, conflicts="proceed", wait_for_completion=True)
                else:
                    self._bulk_index(items)
            self.client.indices.refresh(index=self.index)

    def rollback(self) -> None:
        """Forget the buffered changes: the server never saw them."""
        self._ops = []

    def _bulk_index(self, rows: list[tuple[int, str, str, str]]) -> None:
        from elasticsearch.helpers import bulk

        actions = ({"_index": self.index, "_id": str(uid), "_source": {
            "unit_id": str(uid), "doc_id": doc_id, "level": level, "body": body}}
            for uid, doc_id, level, body in rows)
        bulk(self.client, actions, chunk_size=_BULK_CHUNK, refresh=True)

    def _ensure_index(self) -> None:
        if not self.client.indices.exists(index=self.index):
            from elasticsearch import BadRequestError

            try:
                self.client.indices.create(index=self.index, **MAPPING)
            except BadRequestError as e:  # created concurrently by another process: fine
                if "resource_already_exists_exception" not in str(e):
                    raise

    def drop(self) -> None:
        """Delete the whole index (a rebuilt KB's old index, or a test's)."""
        with self._errors("delete"):
            self.client.indices.delete(index=self.index, ignore_unavailable=True)

    # --- reads ---
    def __len__(self) -> int:
        """Indexed units (committed changes only)."""
        with self._errors("count"):
            if not self.client.indices.exists(index=self.index):
                return 0
            return int(self.client.count(index=self.index)["count"])

    def search(self, terms: list[str], k: int, *, levels: list[str] | None = None,
               doc_ids: frozenset[str] | None = None) -> list[tuple[int, float]]:
        """The ``k`` best units for any of ``terms`` by BM25, as [(unit_id, score)]; ``doc_ids``: only
        units of these documents (a ``filter`` clause: it restricts, it does not score)."""
        if not terms or (doc_ids is not None and not doc_ids):
            return []
        query: dict = {"bool": {"should": [{"term": {"body": t}} for t in terms], "minimum_should_match": 1}}
        filters = []
        if levels:
            filters.append({"terms": {"level": list(levels)}})
        if doc_ids is not None:
            filters.append({"terms": {"doc_id": sorted(doc_ids)}})
        if filters:
            query["bool"]["filter"] = filters
        with self._errors("search"):
            resp = self.client.search(index=self.index, query=query, size=k, source=False, track_total_hits=False)
        return [(int(h["_id"]), float(h["_score"])) for h in resp["hits"]["hits"]]

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Server trouble as one actionable line (KBError), not a client traceback."""
        try:
            yield
        except ImportError:
            raise
        except Exception as e:
            from elasticsearch import ApiError, TransportError
            from elasticsearch.helpers import BulkIndexError

            if not isinstance(e, (ApiError, TransportError, BulkIndexError)):
                raise
            from docqa.kb.manifest import KBError

            if getattr(e, "status_code", None) == 404 or "index_not_found" in str(e):
                raise KBError(f"Elasticsearch index {self.index!r} is missing at {self.url}: re-ingest the "
                              "knowledge base, or point DOCQA_ES_URL at the cluster that holds it") from None
            raise KBError(f"could not {what} Elasticsearch index {self.index!r} at {self.url}: "
                          f"{type(e).__name__}: {e}") from None
