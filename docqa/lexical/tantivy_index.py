"""The embedded keyword engine: a tantivy index in the KB's generation directory.

Segment files are immutable, so a new generation starts as hard links to the previous one's
files (see ``docqa.kb``) and the old generation stays readable until the manifest moves on.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from pathlib import Path

from docqa.lexical.base import index_text
from docqa.units import Unit

_HEAP = 64 * 2**20
log = logging.getLogger("docqa.lexical")


def _schema():
    import tantivy

    sb = tantivy.SchemaBuilder()
    sb.add_integer_field("unit_id", stored=True, indexed=True, fast=True)
    sb.add_text_field("doc_id", stored=False, tokenizer_name="raw")
    sb.add_text_field("level", stored=False, tokenizer_name="raw")
    sb.add_text_field("body", stored=False, tokenizer_name="whitespace", index_option="freq")
    return sb.build()


class TantivyIndex:
    """``readonly``: a committed generation opened for search. Opening a tantivy reader takes a lock
    file inside the index folder, so on a read-only volume (a KB published read-only, as operators
    do) the segment files are copied to a private temporary folder first and searched there."""

    def __init__(self, path: Path, *, readonly: bool = False):
        import tantivy

        if not readonly:
            path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.schema = _schema()
        try:
            self.index = tantivy.Index(self.schema, path=str(path))
        except (ValueError, OSError) as e:
            if not readonly or os.access(path, os.W_OK):
                raise
            self.index = self._open_copy(path, e)
        self._writer = None

    def _open_copy(self, path: Path, why: Exception):
        import tantivy

        tmp = tempfile.mkdtemp(prefix="docqa-tantivy-")
        weakref.finalize(self, shutil.rmtree, tmp, True)
        for f in path.iterdir():
            if f.is_file() and not f.name.endswith(".lock"):
                shutil.copyfile(f, os.path.join(tmp, f.name))
        log.info("keyword index %s is read-only (%s): searching a private copy in %s", path, why, tmp)
        return tantivy.Index(self.schema, path=tmp)

    @property
    def writer(self):
        if self._writer is None:
            self._writer = self.index.writer(heap_size=_HEAP, num_threads=1)
        return self._writer

    def add(self, units: list[Unit]) -> None:
        import tantivy

        for u in units:
            self.writer.add_document(tantivy.Document(unit_id=u.unit_id, doc_id=u.doc_id, level=u.level.value,
                                                      body=index_text(u)))

    def delete(self, doc_ids: list[str]) -> None:
        for d in doc_ids:
            self.writer.delete_documents_by_term("doc_id", d)

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.commit()
            self._writer.wait_merging_threads()
            self._writer = None
        self.index.reload()

    def rollback(self) -> None:
        if self._writer is not None:
            self._writer.rollback()
            self._writer = None

    def __len__(self) -> int:
        return int(self.index.searcher().num_docs)

    def search(self, terms: list[str], k: int, *, levels: list[str] | None = None,
               doc_ids: frozenset[str] | None = None) -> list[tuple[int, float]]:
        """BM25 over ``terms``; ``doc_ids``: only units of these documents (a filter clause, scored 0)."""
        import tantivy

        if not terms or (doc_ids is not None and not doc_ids):
            return []
        Q, Occur = tantivy.Query, tantivy.Occur
        q = Q.boolean_query([(Occur.Should, Q.term_query(self.schema, "body", t)) for t in terms])
        must = [(Occur.Must, q)]
        if levels:
            must.append((Occur.Must, Q.boolean_query([(Occur.Should, Q.term_query(self.schema, "level", x))
                                                      for x in levels])))
        if doc_ids is not None:
            must.append((Occur.Must, Q.const_score_query(Q.term_set_query(self.schema, "doc_id", sorted(doc_ids)),
                                                         0.0)))
        if len(must) > 1:
            q = Q.boolean_query(must)
        searcher = self.index.searcher()
        hits = searcher.search(q, k, count=False).hits
        return [(int(searcher.doc(addr)["unit_id"][0]), float(score)) for score, addr in hits]
