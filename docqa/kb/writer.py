"""The single writer of a KB: builds generation N+1 beside N, then swaps the manifest.

1. take ``.write.lock`` (one writer per KB; a second gets a clear error, not a corrupt index);
2. start ``gen-(N+1)``: the segments of gen N (immutable SQLite store + FAISS index pairs, see
   ``docqa/kb/store.py``), tantivy's immutable segment files and the evidence parts hard-linked, and
   one new segment opened for this commit's changes;
3. apply changes (documents replaced or deleted by ``doc_id``): new rows and vectors go to the new
   segment, a replaced or deleted document's rows in older segments are hidden by a tombstone;
4. commit: merge small or mostly-dead segments into the new one when the policy says so
   (``_merge_from``: sizes halving from the oldest to the newest, at most ``MAX_SEGMENTS``; ``docqa
   compact`` merges all), tantivy commit, the new segment's FAISS index written, SQLite committed,
   directory fsynced, and only then the manifest replaced (atomic rename). An exception or Ctrl-C
   before that point deletes gen N+1 (links and new files; gen N's files are untouched) and leaves gen
   N, still named by the manifest, exactly as it was; one after it keeps gen N+1, which the manifest
   already names. A hard crash (SIGKILL, power loss) leaves a gen N+1 directory that no manifest
   names: the next writer deletes it before it starts.

So a commit writes what it changed (plus, now and then, a merge whose cost is amortised: each unit is
rewritten a logarithmic number of times), not the whole KB. A generation written before segments (one
``store.sqlite`` and ``vectors.faiss``) becomes the first segment of the next one, linked, not copied.

Elasticsearch is the exception: it is a server, not a file in the generation directory, so its
writes cannot be swapped with the manifest. They are sent in ``commit()`` just before the swap
(see ``docqa/lexical/elastic.py`` for what a crash between the two leaves behind).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np

from docqa.document import Document
from docqa.kb.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    SEGMENTS,
    KBBusy,
    KBDamaged,
    KBError,
    KBNotFound,
    built_settings,
    fsync_dir,
    gen_dir,
    generations_on_disk,
    kb_path,
    link_or_copy,
    read_manifest,
    segment_files,
    segment_name,
    write_manifest,
)
from docqa.kb.rules import RULES as CHUNKING_RULES
from docqa.kb.rules import RULES_CHANGES
from docqa.kb.store import MAX_SEGMENTS, UnitStore
from docqa.models.embedder import embedder_for
from docqa.settings import LexicalBackend, Settings
from docqa.units import Level, Unit

_PARENT_LEVEL = {Level.SENTENCE: Level.SEGMENT, Level.SEGMENT: Level.ARTICLE}
KEEP_OLD_GENERATIONS = 1  # readers still on the previous generation keep working
GENERATION_RECORD = "generation.json"  # the manifest as committed, kept inside its generation (for repair)
_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_SPACE_WORDS = ("no space left", "disk is full", "file too large", "quota exceeded")


_NEARLY_FULL = 64 * 2**20  # less free space than one tantivy segment flush


def is_no_space(exc: BaseException, where: Path | None = None) -> bool:
    """Whether ``exc`` (from the OS, SQLite, FAISS or tantivy) means the disk, quota or file-size
    limit ran out. The libraries wrap the OS error in their own types, so their text is read too;
    tantivy's writer thread loses it altogether ("An index writer was killed"), so an error while
    the file system holding ``where`` is (nearly) full counts as well."""
    for e in (exc, exc.__cause__, exc.__context__):
        if isinstance(e, OSError) and e.errno in _NO_SPACE_ERRNOS:
            return True
        if e is not None and any(w in str(e).lower() for w in _NO_SPACE_WORDS):
            return True
    if where is not None:
        try:
            st = os.statvfs(where)
            return st.f_bavail * st.f_frsize < _NEARLY_FULL
        except OSError:
            return False
    return False


class KBWriter:
    def __init__(self, name: str, settings: Settings, *, create: bool = True, rebuild: dict | None = None):
        """``rebuild``: start the new generation empty with these build settings laid over the
        recorded ones (``docqa reindex``; ``{}``: the same settings); the caller re-adds every document."""
        self.name = name
        self.root = kb_path(settings, name)
        if not (self.root / MANIFEST).is_file() and not generations_on_disk(self.root):
            if not create:
                raise KBError(f"knowledge base {name!r} not found under {settings.home}")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise KBError(f"cannot create knowledge base {name!r} in {settings.home}: {e.strerror or e}") from None
        self._lock_fd = self._take_lock()
        self.gdir: Path | None = None
        self.generation = 0
        self._retired_es_index: str | None = None
        try:
            self._open(settings, rebuild)
        except BaseException as e:
            full = isinstance(e, Exception) and is_no_space(e, self.root)  # before the new generation is removed
            if self.gdir is not None and not self._is_current():
                shutil.rmtree(self.gdir, ignore_errors=True)
            self._release_lock()
            if full:
                raise self._no_space_error(e) from e
            raise

    def _open(self, settings: Settings, build: dict | None) -> None:
        rebuild = build is not None
        try:
            self.manifest = read_manifest(self.root)
        except KBNotFound:  # a new KB (or one that never committed): nothing to lose
            now = time.time()
            self.manifest = {"format_version": FORMAT_VERSION, "name": self.name, "generation": 0,
                             "build": settings.build_settings(), "created_at": now, "updated_at": now,
                             "chunking_rules": CHUNKING_RULES}
        except KBError as e:
            self._refuse_to_replace(e)
        if rebuild:
            self.manifest["build"] = {**self.manifest["build"], **build}
        self.settings = built_settings(settings, self.manifest, self.root)
        self.manifest["build"] = self.settings.build_settings()
        self.embedder = embedder_for(self.settings)
        old = int(self.manifest["generation"])
        self.generation = old + 1
        self.gdir = gen_dir(self.root, self.generation)
        if self.gdir.exists():  # left over by a crashed writer: never referenced by a manifest
            shutil.rmtree(self.gdir)
        self.gdir.mkdir()
        self._vectors = None
        self.segments: list[str] = []  # the committed segments this generation keeps, oldest first
        self._compact = False
        seg_dir = self.gdir / SEGMENTS
        seg_dir.mkdir()
        if old and not rebuild:
            odir = gen_dir(self.root, old)
            files = segment_files(odir, self.manifest)
            missing = [p.name for _, st, vec in files for p in (st, vec) if not p.is_file()]
            if missing:  # the manifest names a generation that is not (all) there: not an empty KB either
                where = "the folder" if not odir.is_dir() else f"{' and '.join(missing[:4])} of the folder"
                raise KBDamaged(f"knowledge base {self.name!r}: {where} of generation {old} ({odir.name}) is missing; "
                                f"run `docqa repair --kb {self.name}` to find the newest complete generation")
            for name, st, vec in files:
                seg = segment_name(old) if name == "store" else name  # a format-1 generation: its one segment
                link_or_copy(st, seg_dir / f"{seg}.sqlite")
                link_or_copy(vec, seg_dir / f"{seg}.faiss")
                self.segments.append(seg)
            _link_tree(odir / "lexical", self.gdir / "lexical")
        self.store = UnitStore([seg_dir / f"{n}.sqlite" for n in self.segments],
                               main=seg_dir / f"{segment_name(self.generation)}.sqlite")
        from docqa.kb.evidence import SUBDIR, EvidenceWriter
        from docqa.screening.claims import reads_kb_vectors

        self.evidence = EvidenceWriter(self.gdir / SUBDIR, self.embedder.dim, f"g{self.generation:08d}",
                                       gen_dir(self.root, old) / SUBDIR if old and not rebuild else None,
                                       self.manifest.get("evidence"), enabled=self.settings.evidence_vectors,
                                       clauses=reads_kb_vectors(self.settings, self.name))
        if self.evidence.enabled and not self.evidence.complete and self.store.counts()["units"] == 0:
            self.evidence.complete = True  # nothing committed before that lacks them
        self._pick_es_index(rebuild, old)
        from docqa.lexical import open_lexical

        self.lexical = open_lexical(self.settings.lexical_backend, self.gdir / "lexical",
                                    es_url=self.settings.es_url, es_index=self.manifest.get("es_index"))
        self.store.begin()
        # unit ids are never reused (a deleted unit's evidence row must not answer for a new unit)
        mark = self.manifest.get("next_unit_id")
        self._next_id = max(self.store.max_unit_id() + 1, mark if isinstance(mark, int) else 0)
        self.changed = rebuild

    def evidence_missing(self) -> str | None:
        """Why some answers of this KB still embed passage sentences at question time (documents ingested
        before docqa stored evidence vectors), with the command that fixes it; None when none do."""
        if self.evidence.complete or not self.evidence.enabled:
            return None
        return (f"some documents of {self.name!r} were ingested before docqa stored the vectors of their evidence "
                f"sentences, so the first answers after each start embed them; `docqa reindex --kb {self.name}` "
                "stores them")

    def chunking_rules_behind(self) -> str | None:
        """What re-chunking would bring, when some documents were chunked by older rules (a KB written
        before the manifest recorded them counts as rules 1); None when the KB is current."""
        have = int(self.manifest.get("chunking_rules", 1))
        gains = [RULES_CHANGES[v] for v in range(have + 1, CHUNKING_RULES + 1) if v in RULES_CHANGES]
        return "; ".join(gains) if gains else None

    def rechunked(self) -> None:
        """Every document was chunked again by the current rules (reindex), and so stored its evidence vectors."""
        self.manifest["chunking_rules"] = CHUNKING_RULES
        self.evidence.complete = True
        self.changed = True

    def _refuse_to_replace(self, err: KBError) -> None:
        """A KB whose manifest is unreadable or gone, but whose data is on disk, is not an empty KB:
        writing would start it over at generation 1 and lose every document. Refuse, and say where
        the data is and how to get it back."""
        gens = [gen_dir(self.root, g).name for g in generations_on_disk(self.root)]
        raise KBError(f"refusing to write to knowledge base {self.name!r}: {err}. Its data is still on disk "
                      f"({', '.join(gens[-2:]) or 'no complete generation'}), and writing now would replace it: "
                      f"`docqa repair --kb {self.name}` finds the newest complete generation and rewrites the "
                      f"manifest (or restore {MANIFEST} from a backup)")

    def _pick_es_index(self, rebuild: bool, old_generation: int) -> None:
        """One Elasticsearch index per KB, named in the manifest (a shared index would mix KBs'
        unit ids), and a fresh one per rebuild. A KB written before names were recorded keeps the
        legacy name until it is reindexed."""
        if self.settings.lexical_backend != LexicalBackend.ELASTICSEARCH:
            return
        if rebuild or (not old_generation and not self.manifest.get("es_index")):
            self._retired_es_index = self.manifest.get("es_index") if rebuild else None
            self.manifest["es_index"] = f"docqa-{self.name.lower()}-{uuid.uuid4().hex[:10]}"

    # --- locking ---
    def _take_lock(self) -> int:
        return _take_lock(self.root, self.name)

    @staticmethod
    @contextlib.contextmanager
    def lock_only(name: str, settings: Settings):
        """Hold the KB's write lock without opening a generation (``docqa repair``)."""
        fd = _take_lock(kb_path(settings, name), name)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- changes ---
    def is_unchanged(self, doc: Document) -> bool:
        """Same content and same user metadata (groups, tags...) as the stored document."""
        from docqa.doc_meta import EMPTY_HASH

        if self.store.doc_hash(doc.doc_id) != doc.content_hash:
            return False
        return (self.store.doc_meta_hash(doc.doc_id) or EMPTY_HASH) == doc.meta.get("meta_hash", EMPTY_HASH)

    @property
    def vectors(self):
        if self._vectors is None:
            from docqa.vector_index import VectorIndex

            self._vectors = VectorIndex.create(self.embedder.dim, self.settings.vector_index)
        return self._vectors

    def put_documents(self, items: list[tuple[Document, list[Unit]]], *, show_progress: bool = False) -> int:
        """Add or replace documents with their units; returns the number of units written."""
        if not items:
            return 0
        self.delete_docs([d.doc_id for d, _ in items if self.store.doc_hash(d.doc_id) is not None])
        all_units: list[Unit] = []
        now = time.time()
        for doc, units in items:
            self._assign_ids(units)
            self.store.put_doc(doc, len(units), now)
            all_units.extend(units)
        vecs = self._vectors_of(all_units, show_progress)
        self.vectors.add(np.array([u.unit_id for u in all_units], dtype=np.int64), vecs)
        self.evidence.add([u for u in all_units if u.level == Level.SEGMENT], self.embedder)
        self.store.put_units(all_units)
        self.lexical.add(all_units)
        self.changed = True
        return len(all_units)

    def _vectors_of(self, units: list[Unit], show_progress: bool) -> np.ndarray:
        """Vectors of ``units``: those the segment pass computed, the rest embedded now."""
        todo = [i for i, u in enumerate(units) if u.vector is None]
        if len(todo) == len(units):
            return self.embedder.encode_docs([u.embed_input(self.settings.embed) for u in units],
                                             show_progress=show_progress)
        vecs = np.zeros((len(units), self.embedder.dim), dtype=np.float32)
        for i, u in enumerate(units):
            if u.vector is not None:
                vecs[i] = u.vector
        if todo:
            vecs[todo] = self.embedder.encode_docs([units[i].embed_input(self.settings.embed) for i in todo])
        return vecs

    def _assign_ids(self, units: list[Unit]) -> None:
        ids: dict[tuple[Level, int], int] = {}
        for u in units:
            u.unit_id = self._next_id
            self._next_id += 1
            ids[(u.level, u.ord)] = u.unit_id
        for u in units:
            parent_level = _PARENT_LEVEL.get(u.level)
            if u.parent_ord is not None and parent_level is not None:
                u.parent_id = ids.get((parent_level, u.parent_ord))

    def delete_docs(self, doc_ids: list[str]) -> int:
        """Remove documents and all their units; returns how many documents existed."""
        present = [d for d in doc_ids if self.store.doc_hash(d) is not None]
        if not present:
            return 0
        unit_ids = self.store.unit_ids_of_docs(present)
        self.evidence.deleted(self.store.count_units(present, Level.SEGMENT))
        if self._vectors is not None:  # units added by this writer; older segments' are hidden by the tombstone
            self._vectors.remove(unit_ids)
        self.lexical.delete(present)
        self.store.delete_docs(present)
        self.changed = True
        return len(present)

    # --- commit / abort ---
    def compact(self) -> None:
        """Merge every segment into one at commit (``docqa compact``): dead rows dropped, one index to search."""
        self._compact = True
        self.changed = True

    def _merge_from(self) -> int | None:
        """The first committed segment to merge into the new one, or None. Sizes should halve from the oldest
        segment to the newest: an older segment no more than twice the size of all newer ones together
        joins the merge (so each unit is rewritten O(log n) times); a segment whose rows are mostly dead
        is rewritten; never more than ``MAX_SEGMENTS`` are kept."""
        rows = self.store.segment_rows()  # committed segments, then the new one
        n = len(rows) - 1
        if n == 0:
            return None
        if self._compact:
            return 0
        first, size = n, rows[n][0]
        while first > 0 and rows[first - 1][0] <= 2 * size:
            first -= 1
            size += rows[first][0]
        first = next((i for i in range(first) if rows[i][0] and 2 * rows[i][1] > rows[i][0]), first)
        first = min(first, MAX_SEGMENTS - 1)
        return first if first < n else None

    def _merge(self, first: int) -> None:
        """Move the live rows and vectors of segments ``first``.. into the new segment, and drop them."""
        from docqa.vector_index import VectorIndex

        self.store.absorb(first)
        keep = self.store.main_unit_ids()
        seg_dir = self.gdir / SEGMENTS
        for name in self.segments[first:]:
            part = VectorIndex.load(seg_dir / f"{name}.faiss")
            for ids, vecs in part.batches():
                live = np.isin(ids, keep)
                if live.any():
                    self.vectors.add(ids[live], vecs[live])
        for name in self.segments[first:]:
            for end in (".sqlite", ".faiss"):
                (seg_dir / f"{name}{end}").unlink()
        self.segments = self.segments[:first]

    def commit(self) -> dict:
        """Make the new generation current. Returns the KB's counts."""
        self.lexical.commit()
        first = self._merge_from()
        if first is not None:
            self._merge(first)
        seg_dir = self.gdir / SEGMENTS
        new = segment_name(self.generation)
        keep_new = not (self.segments and self.store.main_is_empty())  # a commit that changed nothing here
        if keep_new:
            self.vectors.save(seg_dir / f"{new}.faiss")
        evidence = self.evidence.finish(self.store.live_unit_ids, compact=self._compact)
        fsync_dir(self.evidence.folder)
        self.store.commit()
        counts = self.store.counts()
        self.store.close()
        if keep_new:
            self.segments.append(new)
        else:
            (seg_dir / f"{new}.sqlite").unlink()
        fsync_dir(seg_dir)
        fsync_dir(self.gdir)
        now = time.time()
        self.manifest.update(format_version=FORMAT_VERSION, generation=self.generation, updated_at=now, counts=counts,
                             embed={"model": self.settings.embed_model, "dim": self.embedder.dim},
                             evidence=evidence, next_unit_id=self._next_id, segments=list(self.segments))
        _write_record(self.gdir / GENERATION_RECORD, self.manifest)
        fsync_dir(self.gdir)
        write_manifest(self.root, self.manifest)
        self._gc()
        self._release_lock()
        return counts

    def abort(self) -> None:
        """Drop the new generation and unlock. Cleanup never raises, so the exception that caused
        the abort is the one the user sees; a generation the manifest already names (the swap
        happened, then something failed) is kept, never deleted under the readers' feet."""
        try:
            for step in (self.store.rollback, self.store.close, getattr(self.lexical, "rollback", None),
                         getattr(getattr(self, "evidence", None), "abort", None)):
                if step is not None:
                    with contextlib.suppress(Exception):
                        step()
            if not self._is_current():
                shutil.rmtree(self.gdir, ignore_errors=True)
        finally:
            self._release_lock()

    def _is_current(self) -> bool:
        """True when the manifest on disk names this writer's generation."""
        try:
            return int(read_manifest(self.root).get("generation", 0)) == self.generation
        except (KBError, ValueError, TypeError):
            return False

    def _gc(self) -> None:
        """Delete generations older than the ones kept, temp manifests of crashed writers, and the
        Elasticsearch index a rebuild replaced. Best effort: the commit has already happened."""
        keep = {gen_dir(self.root, g).name for g in range(self.generation - KEEP_OLD_GENERATIONS, self.generation + 1)}
        for p in self.root.glob("gen-*"):
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(f".{MANIFEST}.*.tmp"):
            p.unlink(missing_ok=True)
        if self._retired_es_index:
            with contextlib.suppress(Exception):
                from docqa.lexical.elastic import ElasticIndex

                ElasticIndex(self.settings.es_url or "", self._retired_es_index).drop()

    def __enter__(self) -> KBWriter:
        return self

    def _no_space_error(self, exc: BaseException) -> KBError:
        why = " ".join(str(exc).split())[:160]
        return KBError(f"disk full while writing generation {self.generation} of knowledge base {self.name!r} "
                       f"({why}); the KB is unchanged: free space under {self.root.parent} and run the command again")

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._lock_fd is None:
            return  # committed
        full = isinstance(exc, Exception) and is_no_space(exc, self.root)  # before the new generation is removed
        self.abort()
        if full and not self._is_current():
            raise self._no_space_error(exc) from exc


def _take_lock(root: Path, name: str) -> int:
    """The KB's one-writer lock (``.write.lock``, flock); KBError when another process holds it."""
    try:
        fd = os.open(root / ".write.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:  # e.g. a KB published on a read-only volume: readers work, writers cannot
        raise KBError(f"cannot write to knowledge base {name!r}: {root} is not writable ({e.strerror or e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise KBBusy(f"knowledge base {name!r} is being written by another process; try again when it "
                     "has finished") from None
    return fd


def _write_record(path: Path, data: dict) -> None:
    import json

    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
        f.flush()
        os.fsync(f.fileno())


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into ``dst`` (tantivy segment files are immutable)."""
    dst.mkdir(parents=True, exist_ok=True)
    if not src.is_dir():
        return
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".lock"):
            link_or_copy(f, dst / f.name)


def store_tuned(name: str, settings: Settings, values: dict, why: str) -> dict:
    """Record tuned run-time settings in KB ``name``'s manifest (under the write lock), so every reader,
    the server included, uses them from its next request. Returns the ``tuned`` entry."""
    import time


    root = kb_path(settings, name)
    with KBWriter.lock_only(name, settings):
        manifest = read_manifest(root)
        old = (manifest.get("tuned") or {}).get("values") or {}
        manifest["tuned"] = {"values": {**old, **values}, "why": why, "at": time.time()}
        write_manifest(root, manifest)
    return manifest["tuned"]
