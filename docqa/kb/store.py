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
CREATE TABLE IF NOT EXISTS deleted_docs (doc_id TEXT PRIMARY KEY);
"""
_UNIT_COLS = "unit_id, doc_id, level, ord, parent_id, text, keyinfo, heading_path, page, label"
# Segments written before pinpoint labels have no ``label`` column: read as "" (``docqa reindex`` adds them).
_DOC_TABLE_COLS = "doc_id, source, title, content_hash, meta, blocks, n_units, added_at"
MAX_SEGMENTS = 8  # committed segments a writer keeps (SQLite attaches at most 10 databases)


_DOC_COLS = "doc_id, source, title, content_hash, n_units, added_at, meta"


def _doc_row(r) -> dict:
    return {"doc_id": r[0], "source": r[1], "title": r[2], "content_hash": r[3], "units": r[4], "added_at": r[5],
            "meta": json.loads(r[6] or "{}")}


def _row_to_unit(r) -> Unit:
    return Unit(unit_id=r[0], doc_id=r[1], level=Level(r[2]), ord=r[3], parent_id=r[4], text=r[5],
                keyinfo=r[6] or "", heading_path=json.loads(r[7] or "[]"), page=r[8], label=r[9] or "")


class UnitStore:
    """The documents and units of one generation: its segments, read as one store.

    A generation is a list of immutable segments, oldest first, each a SQLite file with ``docs``,
    ``units`` and ``deleted_docs``: a document id in a segment's ``deleted_docs`` hides that document's
    rows in every older segment (a replaced or deleted document; unit ids are never reused, so a unit is
    live exactly when its document's row in its segment is). Reads go through two temporary views,
    ``all_docs`` and ``all_units``, over the live rows of every segment, so a query sees one store.
    A writer opens its new segment as the ``main`` database, writable, on top of the committed ones;
    readers attach every segment immutable (no locks, nothing written: a KB on a read-only volume can
    be served). SQLite attaches at most 10 databases: the writer keeps segments to ``MAX_SEGMENTS``.
    """

    def __init__(self, segments: list[Path], *, main: Path | None = None):
        """``segments``: committed segment files, oldest first; ``main``: the writer's new segment (created
        when missing), newest of all; None for a reader."""
        self.readonly = main is None
        self.paths = list(segments)
        self.path = main if main is not None else (self.paths[-1] if self.paths else Path(":memory:"))
        if len(self.paths) > MAX_SEGMENTS + 1:
            raise KBDamaged(f"a generation of {len(self.paths)} segments (at most {MAX_SEGMENTS + 1} can be read); "
                            "run `docqa repair`")
        uri = f"file:{quote(str(main))}" if main is not None else "file::memory:"
        self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self.aliases: list[str] = []
        try:
            for i, path in enumerate(self.paths):
                # a '?' or '#' in a folder name must not end the path part of the URI
                self.conn.execute(f"ATTACH DATABASE ? AS s{i}", (f"file:{quote(str(path))}?mode=ro&immutable=1",))
                self.aliases.append(f"s{i}")
            if main is not None:
                self.conn.execute("PRAGMA main.journal_mode=DELETE")
                self.conn.executescript(_SCHEMA)
                self.aliases.append("main")
            self._make_views()
        except sqlite3.DatabaseError:
            self.conn.close()
            raise

    def _make_views(self) -> None:
        """``all_docs`` / ``all_units``: the live rows of every segment (see the class docstring)."""
        self._table_names = {a: self._tables(a) for a in self.aliases}
        doc_arms, unit_arms = [], []
        for i, a in enumerate(self.aliases):
            if not {"docs", "units"} <= self._table_names[a]:
                raise sqlite3.DatabaseError(f"segment {self.paths[i] if i < len(self.paths) else self.path} has no "
                                            "docs or units table")
            label = "label" if "label" in self._columns(a, "units") else "'' AS label"
            doc_arms.append(f"SELECT {_DOC_TABLE_COLS} FROM {a}.docs x WHERE {self._live(i)}")
            unit_arms.append(f"SELECT {_UNIT_COLS.replace(', label', ', ' + label)} FROM {a}.units x "
                             f"WHERE {self._live(i)}")
        if not self.aliases:  # no segment at all: an empty store
            doc_arms = ["SELECT " + ", ".join(f"NULL AS {c}" for c in _DOC_TABLE_COLS.split(", ")) + " WHERE 0"]
            unit_arms = ["SELECT " + ", ".join(f"NULL AS {c}" for c in _UNIT_COLS.split(", ")) + " WHERE 0"]
        self.conn.execute("DROP VIEW IF EXISTS temp.all_docs")
        self.conn.execute("DROP VIEW IF EXISTS temp.all_units")
        self.conn.execute(f"CREATE TEMP VIEW all_docs AS {' UNION ALL '.join(doc_arms)}")
        self.conn.execute(f"CREATE TEMP VIEW all_units AS {' UNION ALL '.join(unit_arms)}")

    def _tables(self, alias: str) -> set[str]:
        return {r[0] for r in self.conn.execute(f"SELECT name FROM {alias}.sqlite_master WHERE type='table'")}

    def _columns(self, alias: str, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute(f"PRAGMA {alias}.table_info({table})").fetchall()}

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
            raise KBDamaged(f"the document store of {_kb_name(self.path)!r} is damaged ({e}); run "
                            f"`docqa repair --kb {_kb_name(self.path)}` to find the newest complete generation") \
                from None

    def doc_hash(self, doc_id: str) -> str | None:
        rows = self._q("SELECT content_hash FROM all_docs WHERE doc_id=?", (doc_id,))
        return rows[0][0] if rows else None

    def doc_meta_hash(self, doc_id: str) -> str | None:
        """The stored ``meta_hash`` (``docqa.doc_meta``) of a document; None for one stored without it."""
        rows = self._q("SELECT json_extract(meta, '$.meta_hash') FROM all_docs WHERE doc_id=?", (doc_id,))
        return rows[0][0] if rows else None

    def doc_groups(self, doc_id: str) -> tuple[bool, list[str]]:
        """(whether the document exists, its groups: [] for a KB-wide document)."""
        rows = self._q("SELECT json_extract(meta, '$.groups') FROM all_docs WHERE doc_id=?", (doc_id,))
        if not rows:
            return False, []
        return True, json.loads(rows[0][0]) if rows[0][0] else []

    def doc_ids_for_source(self, source: str) -> list[str]:
        """Documents from this file: the file itself, or the records of a JSONL file ("path#id").

        A prefix compare, not LIKE: LIKE treats '_' in file names as a wildcard and ignores ASCII
        case, so deleting "a_b.jsonl" could take the records of "aXb.jsonl" or "A_B.jsonl" too."""
        prefix = source + "#"
        return [r[0] for r in self._q("SELECT doc_id FROM all_docs WHERE source=? OR substr(source, 1, ?)=?",
                                      (source, len(prefix), prefix))]

    def doc_ids_under(self, folder: str) -> list[str]:
        """Documents whose source file lies anywhere below ``folder`` (an absolute path)."""
        prefix = folder.rstrip("/") + "/"
        return [r[0] for r in self._q("SELECT doc_id FROM all_docs WHERE substr(source, 1, ?)=?",
                                      (len(prefix), prefix))]

    def list_docs(self) -> list[dict]:
        """Every document's identity, counts and metadata (no text), ordered by source."""
        return [_doc_row(r) for r in self._q(f"SELECT {_DOC_COLS} FROM all_docs ORDER BY source, doc_id")]

    def get_doc(self, doc_id: str) -> Document | None:
        rows = self._q("SELECT doc_id, source, title, content_hash, meta, blocks FROM all_docs WHERE doc_id=?",
                       (doc_id,))
        if not rows:
            return None
        r = rows[0]
        return Document.from_dict({"doc_id": r[0], "source": r[1], "title": r[2], "content_hash": r[3],
                                   "meta": json.loads(r[4] or "{}"), "blocks": json.loads(r[5] or "[]")})

    def iter_docs(self):
        for (doc_id,) in self._q("SELECT doc_id FROM all_docs ORDER BY added_at, doc_id"):
            doc = self.get_doc(doc_id)
            if doc is not None:
                yield doc

    def doc_sources(self, doc_ids: list[str]) -> dict[str, tuple[str, str]]:
        """doc_id -> (source, title)."""
        if not doc_ids:
            return {}
        marks = ",".join("?" * len(doc_ids))
        rows = self._q(f"SELECT doc_id, source, title FROM all_docs WHERE doc_id IN ({marks})", list(doc_ids))
        return {r[0]: (r[1], r[2]) for r in rows}

    def get_units(self, unit_ids: list[int]) -> dict[int, Unit]:
        if not unit_ids:
            return {}
        marks = ",".join("?" * len(unit_ids))
        rows = self._q(f"SELECT {_UNIT_COLS} FROM all_units WHERE unit_id IN ({marks})", [int(i) for i in unit_ids])
        return {r[0]: _row_to_unit(r) for r in rows}

    def segments_labelled(self, prefix: str) -> list[Unit]:
        """Segment units whose pinpoint label starts with ``prefix`` ("第十九条"), in id order."""
        return [_row_to_unit(r) for r in self._q(
            f"SELECT {_UNIT_COLS} FROM all_units WHERE level='segment' AND substr(label, 1, ?)=? ORDER BY unit_id",
            (len(prefix), prefix))]

    def units_of_doc(self, doc_id: str) -> list[Unit]:
        return [_row_to_unit(r) for r in self._q(f"SELECT {_UNIT_COLS} FROM all_units WHERE doc_id=? ORDER BY unit_id",
                                                 (doc_id,))]

    def texts_of_level(self, level: Level, limit: int, *, with_ids: bool = False) -> list:
        """The texts of up to ``limit`` units of one level, in id order (``with_ids``: ``(unit_id, text)``)."""
        rows = self._q("SELECT unit_id, text FROM all_units WHERE level=? ORDER BY unit_id LIMIT ?",
                       (level.value, limit))
        return [(r[0], r[1]) for r in rows] if with_ids else [r[1] for r in rows]

    def unit_ids_of_docs(self, doc_ids: list[str]) -> list[int]:
        if not doc_ids:
            return []
        marks = ",".join("?" * len(doc_ids))
        return [r[0] for r in self._q(f"SELECT unit_id FROM all_units WHERE doc_id IN ({marks})", list(doc_ids))]

    def count_units(self, doc_ids: list[str], level: Level) -> int:
        """How many units of ``level`` the documents ``doc_ids`` have."""
        n = 0
        for i in range(0, len(doc_ids), 500):
            chunk = doc_ids[i: i + 500]
            n += self._q(f"SELECT COUNT(*) FROM all_units WHERE level=? AND doc_id IN ({','.join('?' * len(chunk))})",
                         [level.value, *chunk])[0][0]
        return int(n)

    def live_unit_ids(self, ids) -> np.ndarray:
        """A boolean mask over ``ids`` (unit ids): which are in the store."""
        wanted = [int(x) for x in ids]
        have: set[int] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i: i + 500]
            have.update(r[0] for r in self._q(f"SELECT unit_id FROM all_units WHERE unit_id IN "
                                              f"({','.join('?' * len(chunk))})", chunk))
        return np.array([x in have for x in wanted], dtype=bool)

    def counts(self) -> dict[str, int]:
        """Live documents and units: each segment's rows less those a newer tombstone hides (counted through
        the doc_id index; counting the views would test every row against the tombstones: 0.55 s at 1M)."""
        out = {"docs": 0, "units": 0}
        for i, a in enumerate(self.aliases):
            dead = self._dead_where(i)
            for key, table in (("docs", "docs"), ("units", "units")):
                n = self._q(f"SELECT COUNT(*) FROM {a}.{table}")[0][0]
                if dead:
                    n -= self._q(f"SELECT COUNT(*) FROM {a}.{table} WHERE {dead}")[0][0]
                out[key] += int(n)
        return out

    def max_unit_id(self) -> int:
        """The largest unit id in any segment, dead rows included (ids are never reused): one B-tree lookup per
        segment, not a scan of the views."""
        return max([int(self._q(f"SELECT COALESCE(MAX(unit_id), 0) FROM {a}.units")[0][0]) for a in self.aliases],
                   default=0)

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
            f"INSERT OR REPLACE INTO main.docs ({_DOC_TABLE_COLS}) VALUES (?,?,?,?,?,?,?,?)",
            (doc.doc_id, doc.source, doc.title, doc.content_hash, json.dumps(doc.meta, ensure_ascii=False),
             json.dumps([b.to_dict() for b in doc.blocks], ensure_ascii=False), n_units, added_at))

    def put_units(self, units: list[Unit]) -> None:
        self.conn.executemany(
            f"INSERT INTO main.units ({_UNIT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(u.unit_id, u.doc_id, u.level.value, u.ord, u.parent_id, u.text, u.keyinfo,
              json.dumps(u.heading_path, ensure_ascii=False), u.page, u.label or None) for u in units])

    def delete_docs(self, doc_ids: list[str]) -> None:
        """Delete documents: their rows in the new segment, and (a tombstone) in every older one."""
        for d in doc_ids:
            self.conn.execute("DELETE FROM main.units WHERE doc_id=?", (d,))
            self.conn.execute("DELETE FROM main.docs WHERE doc_id=?", (d,))
            if self.paths:
                self.conn.execute("INSERT OR IGNORE INTO main.deleted_docs VALUES (?)", (d,))

    # --- segments (the writer's view of the generation it builds) ---
    def segment_rows(self) -> list[tuple[int, int]]:
        """``(rows, dead rows)`` of the units of each segment, oldest first, the new one last."""
        out = []
        for i, a in enumerate(self.aliases):
            total = self.conn.execute(f"SELECT COUNT(*) FROM {a}.units").fetchone()[0]
            dead = self._dead_where(i)
            n_dead = self.conn.execute(f"SELECT COUNT(*) FROM {a}.units WHERE {dead}").fetchone()[0] if dead else 0
            out.append((int(total), int(n_dead)))
        return out

    def _dead_where(self, i: int) -> str | None:
        """SQL true for a row of segment ``i`` that a newer segment's tombstone hides (None: none can be): a
        lookup per tombstone through the ``doc_id`` index, not a scan of the segment."""
        newer = [b for b in self.aliases[i + 1:] if "deleted_docs" in self._table_names[b]]
        if not newer:
            return None
        return "doc_id IN (" + " UNION ".join(f"SELECT doc_id FROM {b}.deleted_docs" for b in newer) + ")"

    def _live(self, i: int) -> str:
        """SQL true for a row of segment ``i`` that no newer segment's tombstone hides."""
        dead = self._dead_where(i)
        return f"NOT ({dead})" if dead else "1"

    def dead_unit_ids(self, i: int) -> np.ndarray:
        """Unit ids of segment ``i`` whose document a newer segment replaced or deleted (int64, ascending)."""
        dead = self._dead_where(i)
        if dead is None:
            return np.zeros(0, dtype=np.int64)
        rows = self._q(f"SELECT unit_id FROM {self.aliases[i]}.units WHERE {dead} ORDER BY unit_id")
        return np.array([r[0] for r in rows], dtype=np.int64)

    def segment_unit_count(self, i: int) -> int:
        """All unit rows of segment ``i``, live or not (one vector each in its vector part)."""
        return int(self._q(f"SELECT COUNT(*) FROM {self.aliases[i]}.units")[0][0])

    def absorb(self, first: int) -> None:
        """Merge segments ``first`` .. the newest committed one into the new segment: copy their live rows,
        and keep their tombstones where older segments remain (they hide rows there). Inside the
        writer's transaction; the caller drops those segments from the generation it commits."""
        assert not self.readonly and self.aliases[-1] == "main"
        label = {a: "label" if "label" in self._columns(a, "units") else "''" for a in self.aliases}
        for i in range(first, len(self.aliases) - 1):
            a = self.aliases[i]
            live = self._live(i)
            self.conn.execute(f"INSERT INTO main.docs ({_DOC_TABLE_COLS}) SELECT {_DOC_TABLE_COLS} FROM {a}.docs x "
                              f"WHERE {live}")
            cols = _UNIT_COLS.replace(", label", f", {label[a]}")
            self.conn.execute(f"INSERT INTO main.units ({_UNIT_COLS}) SELECT {cols} FROM {a}.units x WHERE {live}")
        for i in range(first, len(self.aliases) - 1):
            a = self.aliases[i]
            if first > 0 and "deleted_docs" in self._table_names[a]:
                self.conn.execute(f"INSERT OR IGNORE INTO main.deleted_docs SELECT doc_id FROM {a}.deleted_docs")
        if first == 0:
            self.conn.execute("DELETE FROM main.deleted_docs")
        self.aliases = self.aliases[:first] + ["main"]  # still attached, no longer read
        self.paths = self.paths[:first]
        self._make_views()

    def main_unit_ids(self) -> np.ndarray:
        """Unit ids in the new segment (int64, ascending)."""
        return np.array([r[0] for r in self.conn.execute("SELECT unit_id FROM main.units ORDER BY unit_id")],
                        dtype=np.int64)

    def main_is_empty(self) -> bool:
        return not any(self.conn.execute(f"SELECT 1 FROM main.{t} LIMIT 1").fetchone()
                       for t in ("docs", "units", "deleted_docs"))


def _kb_name(path: Path) -> str:
    """The KB a segment or store file belongs to (``<kb>/gen-N/[segments/]file``)."""
    parent = path.parent.parent
    return parent.parent.name if path.parent.name == "segments" else parent.name
