"""Evidence vectors: the vectors of each segment's evidence sentences, computed once at ingest.

Answering scores the sentences of the retrieved passages against the question (service/answering/
extractive.py). Embedding them at question time made the first answers after a start ~30x slower than
warm ones, and a KB whose sentences outgrew the embedder's cache stayed partly cold for good. So the
writer embeds every segment's ``evidence_sentences`` (docqa/text/evidence.py, the one rule both sides
use) when the segment is added, and readers memory-map them: the first answer after a start costs what a
warm one does, whatever the KB's size.

The claim check of an answer (docqa/screening/claims.py) reads each quoted sentence and each clause of
it; so each segment's row also holds the vectors of its sentences' clauses (``claim_clauses``), right
after the sentences' own: an extractive answer's claim check then encodes only docqa's own wording.

On disk, in ``gen-N/evidence/``: immutable parts, each three files —
``<part>.ids.npy`` (int64 unit ids, ascending), ``<part>.rows.npy`` (int64 ``[start, count, crc,
clauses, clauses_crc]`` per unit: its sentences' rows, a CRC-32 of those sentences, then its clauses'
rows and their CRC; parts written before clauses were stored have the first three columns only) and
``<part>.vecs.f16`` (raw float16, ``dim`` per row). A commit hard-links the parts of the generation before
(unchanged: never rewritten) and adds one part for the segments it added, so its cost is what it changed.
A deleted segment's rows stay in their part, unreferenced (unit ids are never reused: ``KBWriter`` keeps a
high-water mark); when dead rows pass half of all rows, or parts pass ``MAX_PARTS``, the commit merges
parts, keeping live rows.

A lookup returns vectors only when the CRC of the sentences the answerer derives from the passage's
text matches the stored one: a passage whose text, or whose sentence rule, changed since ingest (an
older docqa) is embedded at question time as before, never scored with another sentence's vector.
An unreadable part is skipped with a warning (answers embed those sentences instead); ``docqa
reindex`` writes the parts for a KB ingested before they existed.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np

from docqa.kb.manifest import link_or_copy
from docqa.text.evidence import evidence_sentences

log = logging.getLogger("docqa.kb")
SUBDIR = "evidence"
MAX_PARTS = 8
_SEP = "\x1f"
_SUFFIXES = (".ids.npy", ".rows.npy", ".vecs.f16")


def sentences_crc(sentences: list[str]) -> int:
    return zlib.crc32(_SEP.join(sentences).encode("utf-8"))


class _Part:
    def __init__(self, folder: Path, name: str, dim: int):
        self.name = name
        self.ids = np.load(folder / f"{name}.ids.npy", mmap_mode="r")
        self.rows = np.load(folder / f"{name}.rows.npy", mmap_mode="r")
        vecs = folder / f"{name}.vecs.f16"
        size = vecs.stat().st_size
        if size % (2 * dim):
            raise ValueError(f"{vecs.name}: {size} bytes is not a whole number of {dim}-dim float16 rows")
        n = size // (2 * dim)
        self.vecs = np.memmap(vecs, dtype=np.float16, mode="r", shape=(n, dim)) if n else np.zeros((0, dim),
                                                                                                   np.float16)
        if self.ids.ndim != 1 or self.rows.ndim != 2 or self.rows.shape[0] != len(self.ids) \
                or self.rows.shape[1] not in (3, 5):
            raise ValueError(f"{name}: ids {self.ids.shape} and rows {self.rows.shape} do not match")
        ends = self.rows[:, 0] + self.rows[:, 1] + (self.rows[:, 3] if self.rows.shape[1] == 5 else 0)
        if len(self.rows) and int(ends.max()) > n:
            raise ValueError(f"{name}: rows point past the {n} vectors of {vecs.name}")

    def find(self, unit_id: int) -> tuple[int, int, int, int, int] | None:
        """``(start, sentences, crc, clauses, clauses_crc)`` of the unit's row (none stored: 0 clauses)."""
        i = int(np.searchsorted(self.ids, unit_id))
        if i < len(self.ids) and int(self.ids[i]) == unit_id:
            row = tuple(int(x) for x in self.rows[i])
            return row if len(row) == 5 else (*row, 0, 0)
        return None


def part_names(folder: Path) -> list[str]:
    return sorted(p.name[: -len(".ids.npy")] for p in folder.glob("*.ids.npy")) if folder.is_dir() else []


class EvidenceVectors:
    """A generation's evidence vectors, read-only and memory-mapped (``KnowledgeBase.evidence``)."""

    def __init__(self, folder: Path, dim: int):
        self.dim = dim
        self.parts: list[_Part] = []
        for name in part_names(folder):
            try:
                self.parts.append(_Part(folder, name, dim))
            except (OSError, ValueError) as e:
                log.warning("evidence vectors %s/%s are unreadable, answers embed those sentences instead: %s",
                            folder, name, e)

    def __len__(self) -> int:
        return sum(len(p.ids) for p in self.parts)

    def lookup(self, unit_id: int, sentences: list[str]) -> np.ndarray | None:
        """The float32 vectors of ``sentences`` (``evidence_sentences`` of unit ``unit_id``'s text), or
        None when they were not stored as exactly these sentences."""
        found = self._row(unit_id, sentences)
        if found is None:
            return None
        part, (start, count, _, _, _) = found
        return np.asarray(part.vecs[start: start + count], dtype=np.float32)

    def _row(self, unit_id: int, sentences: list[str]):
        """(part, row) of the unit when its stored sentences are exactly ``sentences`` (count and CRC)."""
        if not sentences:
            return None
        for part in reversed(self.parts):  # newest first
            row = part.find(unit_id)
            if row is not None:
                return (part, row) if row[1] == len(sentences) and row[2] == sentences_crc(sentences) else None
        return None

    def sentence_vectors(self, passages) -> dict[str, np.ndarray]:
        """Stored text -> vector of the sentences, and their clauses, of ``passages`` ((unit id, text) pairs,
        e.g. an answer's citations): what the claim check of an answer quoting them may reuse (only exact,
        CRC-checked rows; a row whose clauses another rule split gives its sentences only)."""
        out: dict[str, np.ndarray] = {}
        for unit_id, text in passages:
            sents = evidence_sentences(text)
            found = self._row(unit_id, sents)
            if found is None:
                continue
            part, (start, count, _, n_clauses, clauses_crc) = found
            vecs = part.vecs[start: start + count + n_clauses]
            out.update(zip(sents, vecs[:count], strict=True))
            clauses = claim_clauses(sents) if n_clauses else []
            if clauses and len(clauses) == n_clauses and clauses_crc == sentences_crc(clauses):
                out.update(zip(clauses, vecs[count:], strict=True))
        return {t: np.asarray(v, dtype=np.float32) for t, v in out.items()}


def claim_clauses(sentences: list[str]) -> list[str]:
    """The clauses the claim check reads besides these sentences (its ``pieces`` of each), each once."""
    from docqa.screening.claims import pieces

    have = set(sentences)
    out: list[str] = []
    for s in sentences:
        for p in pieces(s):
            if p not in have:
                have.add(p)
                out.append(p)
    return out


class EvidenceWriter:
    """The evidence parts of a generation being written (``KBWriter``): the old ones linked, a new one
    appended to as segments are added (vectors go to disk as they come, so memory stays flat on a big
    ingest), written out and, when due, merged at commit. ``stats``: the manifest's record of the parts
    ({"rows", "dead"}: segments stored, and how many of them were deleted since)."""

    def __init__(self, folder: Path, dim: int, part: str, previous: Path | None = None, stats: dict | None = None,
                 *, enabled: bool = True, clauses: bool = True):
        """``clauses``: store the vectors of the sentences' clauses too (the KB's answers are claim-checked
        by its own encoder: ``reads_kb_vectors``)."""
        self.folder, self.dim, self.part, self.enabled, self.clauses = folder, dim, part, enabled, clauses
        if not enabled:  # the KB's build says evidence_vectors: false
            previous = None
        folder.mkdir(parents=True, exist_ok=True)
        if previous is not None:
            for name in part_names(previous):
                for suffix in _SUFFIXES:
                    link_or_copy(previous / f"{name}{suffix}", folder / f"{name}{suffix}")
        # complete: every segment has its row (a new KB, a rebuild, or one that was complete); a KB first
        # ingested by a docqa that did not store them is not until `docqa reindex`
        self.complete = previous is None or (isinstance(stats, dict) and stats.get("complete") is True)
        stats = stats if previous is not None and isinstance(stats, dict) else {}
        self.rows, self.dead = _count(stats.get("rows")), _count(stats.get("dead"))
        self._ids: list[int] = []
        self._rows: list[tuple[int, int, int]] = []
        self._n = 0
        self._vecs = None  # the new part's vector file, opened on the first add

    def add(self, units, embedder) -> int:
        """Embed (or take from ``Unit.evidence``) and append the vectors of the evidence sentences of ``units``
        (segments) and, when ``clauses``, of their clauses. Returns how many vectors."""
        if not self.enabled:
            return 0
        todo = [(u, evidence_sentences(u.text)) for u in units]
        todo = [(u.unit_id, s, claim_clauses(s) if self.clauses else [], u.evidence) for u, s in todo if s]
        if not todo:
            return 0
        # vectors a unit brings (``Unit.evidence``) are taken when they are as many as its texts; the rest embedded
        given = [v is not None and len(v) >= len(s) + len(c) for _, s, c, v in todo]
        texts = [t for (_, s, c, _), ok in zip(todo, given, strict=True) if not ok for t in s + c]
        fresh = iter(embedder.encode_docs(texts) if texts else [])
        vecs = np.stack([row for (_, s, c, v), ok in zip(todo, given, strict=True)
                         for row in (v[: len(s) + len(c)] if ok else [next(fresh) for _ in s + c])]).astype(np.float16)
        if self._vecs is None:
            self._vecs = open(self.folder / f"{self.part}.vecs.f16", "wb")  # noqa: SIM115 - closed in finish()
        self._vecs.write(np.ascontiguousarray(vecs).tobytes())
        for uid, sents, clauses, _ in todo:
            self._ids.append(uid)
            self._rows.append((self._n, len(sents), sentences_crc(sents), len(clauses), sentences_crc(clauses)))
            self._n += len(sents) + len(clauses)
        return len(vecs)

    def deleted(self, n: int) -> None:
        """``n`` stored segments were deleted (or replaced): their rows are dead."""
        self.dead += n

    def finish(self, is_live, *, compact: bool = False) -> dict:
        """Write the new part (fsynced), then merge when due (``compact``: all parts into one, now); returns
        the stats for the manifest. ``is_live(ids)``: a boolean mask, which of these unit ids the new
        generation still holds."""
        if self._vecs is not None:
            self._vecs.flush()
            os.fsync(self._vecs.fileno())
            self._vecs.close()
            self._vecs = None
            order = np.argsort(np.array(self._ids, dtype=np.int64), kind="stable")
            _save(self.folder / f"{self.part}.ids.npy", np.array(self._ids, dtype=np.int64)[order])
            _save(self.folder / f"{self.part}.rows.npy", np.array(self._rows, dtype=np.int64).reshape(-1, 5)[order])
            self.rows += len(self._ids)
        if not self.enabled:
            return {"rows": 0, "dead": 0, "complete": False}
        names = part_names(self.folder)
        if (self.rows and self.dead * 2 >= self.rows) or (compact and (len(names) > 1 or self.dead)):
            # half of it dead (or `docqa compact`): rewrite what lives, once
            self._merge(names, is_live)
        elif len(names) > MAX_PARTS:  # the smallest parts into one (the big ones are left as they are)
            sizes = {n: len(np.load(self.folder / f"{n}.ids.npy", mmap_mode="r")) for n in names}
            self._merge(sorted(names, key=lambda n: (sizes[n], n))[: len(names) - MAX_PARTS // 2 + 1], is_live)
        return {"rows": self.rows, "dead": self.dead, "complete": self.complete}

    def _merge(self, names: list[str], is_live) -> None:
        """One part of the live rows of ``names``, replacing them in this generation."""
        parts = [_Part(self.folder, n, self.dim) for n in names]
        merged = f"{self.part}m"
        ids_out, rows_out, n, dropped = [], [], 0, 0
        with open(self.folder / f"{merged}.vecs.f16", "wb") as f:
            for part in parts:
                ids = np.asarray(part.ids)
                live = is_live(ids)
                dropped += int((~live).sum())
                for i in np.flatnonzero(live):
                    start, count, crc, n_clauses, clauses_crc = part.find(int(ids[i]))
                    f.write(np.ascontiguousarray(part.vecs[start: start + count + n_clauses]).tobytes())
                    ids_out.append(int(ids[i]))
                    rows_out.append((n, count, crc, n_clauses, clauses_crc))
                    n += count + n_clauses
            f.flush()
            os.fsync(f.fileno())
        order = np.argsort(np.array(ids_out, dtype=np.int64), kind="stable")
        _save(self.folder / f"{merged}.ids.npy", np.array(ids_out, dtype=np.int64)[order])
        _save(self.folder / f"{merged}.rows.npy", np.array(rows_out, dtype=np.int64).reshape(-1, 5)[order])
        for name in names:  # this generation's links only: the generation before keeps its own
            if name != merged:
                for suffix in _SUFFIXES:
                    (self.folder / f"{name}{suffix}").unlink(missing_ok=True)
        self.rows -= dropped
        self.dead = max(0, self.dead - dropped)
        log.info("evidence vectors: %d parts merged into one (%d segments, %d dead rows dropped)", len(names),
                 len(ids_out), dropped)

    def abort(self) -> None:
        if self._vecs is not None:
            self._vecs.close()
            self._vecs = None


def _count(value) -> int:
    """A count from the manifest; anything else (a hand-edited or damaged record) counts as 0: at worst a
    merge comes early or late."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _save(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())
