"""Documents and units of one KB generation in SQLite (the source of truth for ids and text).

Documents keep their parsed blocks, so ``docqa reindex`` can rebuild every unit (new chunker,
new embedding model) from the stored source text without the original files.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

import numpy as np

from docqa.document import Document
from docqa.kb.manifest import KBDamaged
from docqa.units import Level, Unit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
  doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, title TEXT, content_hash TEXT NOT NULL,
  meta TEXT, blocks TEXT, n_units INTEGER, added_at REAL
);
CREATE INDEX IF NOT EXISTS docs_source ON docs(source);
CREATE TABLE IF NOT EXISTS units (
  unit_id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, level TEXT NOT NULL, ord INTEGER,
  parent_id INTEGER, text TEXT NOT NULL, keyinfo TEXT, heading_path TEXT, page INTEGER, label TEXT
);
CREATE INDEX IF NOT EXISTS units_doc ON units(doc_id);
"""
_UNIT_COLS = "unit_id, doc_id, level, ord, parent_id, text, keyinfo, heading_path, page, label"
# Stores written before pinpoint labels have no ``label`` column: read as "" (``docqa reindex`` adds them);
# a writer adds the column to its copy.
_OLD_UNIT_COLS = _UNIT_COLS.replace(", label", ", '' AS label")


_DOC_COLS = "doc_id, source, title, content_hash, n_units, added_at, meta"


def _doc_row(r) -> dict:
    return {"doc_id": r[0], "source": r[1], "title": r[2], "content_hash": r[3], "units": r[4], "added_at": r[5],
            "meta": json.loads(r[6] or "{}")}


def _row_to_unit(r) -> Unit:
    return Unit(unit_id=r[0], doc_id=r[1], level=Level(r[2]), ord=r[3], parent_id=r[4], text=r[5],
                keyinfo=r[6] or "", heading_path=json.loads(r[7] or "[]"), page=r[8], label=r[9] or "")


class UnitStore:
    def __init__(self, path: Path, *, readonly: bool = False):
        """``readonly``: a committed generation, whose file never changes again; opened immutable,
        so SQLite takes no locks and writes nothing (a KB on a read-only volume can be served)."""
        self.path = path
        self.readonly = readonly
        where = quote(str(path))  # a '?' or '#' in a folder name must not end the path part of the URI
        uri = f"file:{where}?mode=ro&immutable=1" if readonly else f"file:{where}"
        self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        if not readonly:
            self.conn.execute("PRAGMA journal_mode=DELETE")
            self.conn.executescript(_SCHEMA)
            if "label" not in self._unit_columns():
                self.conn.execute("ALTER TABLE units ADD COLUMN label TEXT")
        self._cols = _UNIT_COLS if "label" in self._unit_columns() else _OLD_UNIT_COLS

    def _unit_columns(self) -> set[str]:
        try:
            return {r[1] for r in self.conn.execute("PRAGMA table_info(units)").fetchall()}
        except sqlite3.DatabaseError:  # damaged: reported by the first query that reads it
            return set()

    def close(self) -> None:
        self.conn.close()

    # --- reads (thread-safe) ---
    def _q(self, sql: str, args=()):
        try:
            with self._lock:
                return self.conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:  # a damaged page found only when a query reads it
            if not self.readonly:
                raise
            raise KBDamaged(f"the document store {self.path} is damaged ({e}); run `docqa repair --kb "
                            f"{self.path.parent.parent.name}` to find the newest complete generation") from None

    def doc_hash(self, doc_id: str) -> str | None:
        rows = self._q("SELECT content_hash FROM docs WHERE doc_id=?", (doc_id,))
        return rows[0][0] if rows else None

    def doc_meta_hash(self, doc_id: str) -> str | None:
        """The stored ``meta_hash`` (``docqa.doc_meta``) of a document; None for one stored without it."""
        rows = self._q("SELECT json_extract(meta, '$.meta_hash') FROM docs WHERE doc_id=?", (doc_id,))
        return rows[0][0] if rows else None

    def doc_groups(self, doc_id: str) -> tuple[bool, list[str]]:
        """(whether the document exists, its groups: [] for a KB-wide document)."""
        rows = self._q("SELECT json_extract(meta, '$.groups') FROM docs WHERE doc_id=?", (doc_id,))
        if not rows:
            return False, []
        return True, json.loads(rows[0][0]) if rows[0][0] else []

    def doc_ids_for_source(self, source: str) -> list[str]:
        """Documents from this file: the file itself, or the records of a JSONL file ("path#id").

        A prefix compare, not LIKE: LIKE treats '_' in file names as a wildcard and ignores ASCII
        case, so deleting "a_b.jsonl" could take the records of "aXb.jsonl" or "A_B.jsonl" too."""
        prefix = source + "#"
        return [r[0] for r in self._q("SELECT doc_id FROM docs WHERE source=? OR substr(source, 1, ?)=?",
                                      (source, len(prefix), prefix))]

    def doc_ids_under(self, folder: str) -> list[str]:
        """Documents whose source file lies anywhere below ``folder`` (an absolute path)."""
        prefix = folder.rstrip("/") + "/"
        return [r[0] for r in self._q("SELECT doc_id FROM docs WHERE substr(source, 1, ?)=?", (len(prefix), prefix))]

    def list_docs(self) -> list[dict]:
        """Every document's identity, counts and metadata (no text), ordered by source."""
        return [_doc_row(r) for r in self._q(f"SELECT {_DOC_COLS} FROM docs ORDER BY source, doc_id")]

    def get_doc(self, doc_id: str) -> Document | None:
        rows = self._q("SELECT doc_id, source, title, content_hash, meta, blocks FROM docs WHERE doc_id=?", (doc_id,))
        if not rows:
            return None
        r = rows[0]
        return Document.from_dict({"doc_id": r[0], "source": r[1], "title": r[2], "content_hash": r[3],
                                   "meta": json.loads(r[4] or "{}"), "blocks": json.loads(r[5] or "[]")})

    def iter_docs(self):
        for (doc_id,) in self._q("SELECT doc_id FROM docs ORDER BY rowid"):
            doc = self.get_doc(doc_id)
            if doc is not None:
                yield doc

    def doc_sources(self, doc_ids: list[str]) -> dict[str, tuple[str, str]]:
        """doc_id -> (source, title)."""
        if not doc_ids:
            return {}
        marks = ",".join("?" * len(doc_ids))
        return {r[0]: (r[1], r[2]) for r in self._q(f"SELECT doc_id, source, title FROM docs WHERE doc_id IN ({marks})",
                                                    list(doc_ids))}

    def get_units(self, unit_ids: list[int]) -> dict[int, Unit]:
        if not unit_ids:
            return {}
        marks = ",".join("?" * len(unit_ids))
        rows = self._q(f"SELECT {self._cols} FROM units WHERE unit_id IN ({marks})", [int(i) for i in unit_ids])
        return {r[0]: _row_to_unit(r) for r in rows}

    def segments_labelled(self, prefix: str) -> list[Unit]:
        """Segment units whose pinpoint label starts with ``prefix`` ("第十九条"), in id order."""
        if self._cols is _OLD_UNIT_COLS:
            return []
        return [_row_to_unit(r) for r in self._q(
            f"SELECT {self._cols} FROM units WHERE level='segment' AND substr(label, 1, ?)=? ORDER BY unit_id",
            (len(prefix), prefix))]

    def units_of_doc(self, doc_id: str) -> list[Unit]:
        return [_row_to_unit(r) for r in self._q(f"SELECT {self._cols} FROM units WHERE doc_id=? ORDER BY unit_id",
                                                 (doc_id,))]

    def texts_of_level(self, level: Level, limit: int, *, with_ids: bool = False) -> list:
        """The texts of up to ``limit`` units of one level, in id order (``with_ids``: ``(unit_id, text)``)."""
        rows = self._q("SELECT unit_id, text FROM units WHERE level=? ORDER BY unit_id LIMIT ?", (level.value, limit))
        return [(r[0], r[1]) for r in rows] if with_ids else [r[1] for r in rows]

    def unit_ids_of_docs(self, doc_ids: list[str]) -> list[int]:
        if not doc_ids:
            return []
        marks = ",".join("?" * len(doc_ids))
        return [r[0] for r in self._q(f"SELECT unit_id FROM units WHERE doc_id IN ({marks})", list(doc_ids))]

    def count_units(self, doc_ids: list[str], level: Level) -> int:
        """How many units of ``level`` the documents ``doc_ids`` have."""
        n = 0
        for i in range(0, len(doc_ids), 500):
            chunk = doc_ids[i: i + 500]
            n += self._q(f"SELECT COUNT(*) FROM units WHERE level=? AND doc_id IN ({','.join('?' * len(chunk))})",
                         [level.value, *chunk])[0][0]
        return int(n)

    def live_unit_ids(self, ids) -> np.ndarray:
        """A boolean mask over ``ids`` (unit ids): which are in the store."""
        wanted = [int(x) for x in ids]
        have: set[int] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i: i + 500]
            have.update(r[0] for r in self._q(f"SELECT unit_id FROM units WHERE unit_id IN "
                                              f"({','.join('?' * len(chunk))})", chunk))
        return np.array([x in have for x in wanted], dtype=bool)

    def counts(self) -> dict[str, int]:
        docs = self._q("SELECT COUNT(*) FROM docs")[0][0]
        units = self._q("SELECT COUNT(*) FROM units")[0][0]
        return {"docs": docs, "units": units}

    def max_unit_id(self) -> int:
        return int(self._q("SELECT COALESCE(MAX(unit_id), 0) FROM units")[0][0])

    # --- writes (single writer, inside a transaction opened by the KB writer) ---
    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def put_doc(self, doc: Document, n_units: int, added_at: float) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO docs VALUES (?,?,?,?,?,?,?,?)",
            (doc.doc_id, doc.source, doc.title, doc.content_hash, json.dumps(doc.meta, ensure_ascii=False),
             json.dumps([b.to_dict() for b in doc.blocks], ensure_ascii=False), n_units, added_at))

    def put_units(self, units: list[Unit]) -> None:
        self.conn.executemany(
            f"INSERT INTO units ({_UNIT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(u.unit_id, u.doc_id, u.level.value, u.ord, u.parent_id, u.text, u.keyinfo,
              json.dumps(u.heading_path, ensure_ascii=False), u.page, u.label or None) for u in units])

    def delete_docs(self, doc_ids: list[str]) -> None:
        for d in doc_ids:
            self.conn.execute("DELETE FROM units WHERE doc_id=?", (d,))
            self.conn.execute("DELETE FROM docs WHERE doc_id=?", (d,))

    def backup_to(self, path: Path) -> None:
        dst = sqlite3.connect(str(path))
        with self._lock:
            self.conn.backup(dst)
        dst.close()
