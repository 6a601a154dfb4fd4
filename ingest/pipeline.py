"""Ingestion: files -> documents -> units -> one atomic KB commit, with a per-file report.

A bad file never stops the batch: its failure (path and reason) goes into the report and the rest
is ingested. Unchanged files (same content hash) cost one hash and nothing else. Units are
embedded in batches across documents, so thousands of small JSONL records embed as fast as a few
big files.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from docqa.doc_meta import EMPTY_HASH, MetaError, apply_meta, clean_meta, meta_hash, outside_groups, read_sidecar
from docqa.document import Document, doc_id_for_path
from docqa.kb import KBWriter, KnowledgeBase
from docqa.settings import Settings
from docqa.units import Unit
from ingest.chunking import document_units

FLUSH_UNITS = 512  # embed and write in batches of about this many units


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What one ``docqa ingest`` did. Counts are of documents (a JSONL file holds many)."""

    kb: str
    files: int = 0
    added: int = 0  # documents new to the KB
    updated: int = 0  # documents whose content changed
    unchanged: int = 0
    removed: int = 0  # records no longer in a re-ingested JSONL file
    units: int = 0  # units written
    chars: int = 0  # characters of text ingested
    failures: list[Failure] = field(default_factory=list)
    # problems inside files that were ingested all the same (an OCR page that yielded no text...)
    warnings: list[Failure] = field(default_factory=list)
    # about the KB rather than a file (documents chunked by older rules: what `docqa reindex` brings)
    notices: list[str] = field(default_factory=list)
    # documents screening flagged (screen: flag): {"source", "doc_id", "flags": [{"kind", "match"}]}
    flagged: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    committed: bool = False  # False: nothing changed, or nothing could be ingested
    generation: int = 0  # the KB's current generation after this run
    counts: dict = field(default_factory=dict)  # KB totals after the commit

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["failures"] = [f.__dict__ for f in self.failures]
        d["warnings"] = [f.__dict__ for f in self.warnings]
        return d


def ingest_paths(paths: list[str | Path], kb: str, settings: Settings, *, progress: bool = True,
                 meta: dict | None = None, writable_groups: frozenset[str] | None = None,
                 on_file: FileProgress | None = None) -> IngestReport:
    """Ingest files and folders (recursively) into KB ``kb``, creating it if needed.

    ``meta``: metadata for every document of the run (``--groups``, an upload's fields), under each
    file's sidecar and each record's own keys (``docqa.doc_meta``).
    ``writable_groups``: the groups the writer may file documents in (an upload by a group-restricted API
    key); a document whose final groups leave them, or that would replace or remove one outside them, is
    a failure of its own (``docqa.doc_meta.outside_groups``). None: any (the CLI, an admin).
    ``on_file(path, status, detail)``: told of each file as it goes (an upload job's per-file progress):
    "reading" (detail: "3/10 pages" while OCR reads a scan), then "read", "unchanged" or "failed" (detail:
    the reason); then ``on_file(None, "committing", None)`` before the final embedding and commit.
    Everything is one commit: an exception or Ctrl-C leaves the KB exactly as it was."""
    from ingest.loaders import iter_files

    t0 = time.perf_counter()
    report = IngestReport(kb=kb)
    files = list(iter_files(paths))
    report.files = len(files)
    with KBWriter(kb, settings) as writer, _Batch(writer, report, clean_meta(meta or {}, "--groups/--meta"),
                                                  writable_groups) as batch:
        batch.page_progress = _PageProgress() if progress else None
        for path in _progress(files, progress):
            if on_file is None:
                batch.add_file(path)
            else:
                _told(batch, path, on_file)
        if on_file is not None:
            on_file(None, "committing", None)
        batch.flush()
        missing = writer.evidence_missing()
        if missing:
            report.notices.append(missing)
        behind = writer.chunking_rules_behind()
        if behind:
            report.notices.append(f"some documents of {kb!r} were chunked by an older docqa; `docqa reindex --kb "
                                  f"{kb}` re-chunks them: {behind}")
        if writer.changed:
            report.counts = writer.commit()
            report.committed = True
            report.generation = writer.generation
        else:
            report.counts = writer.store.counts()
            report.generation = writer.generation - 1
    report.seconds = time.perf_counter() - t0
    return report


FileProgress = Callable[[Path | None, str, str | None], None]


def _told(batch: _Batch, path: Path, on_file: FileProgress) -> None:
    """``batch.add_file(path)``, telling ``on_file`` how it went (see ``ingest_paths``)."""
    r = batch.report
    failures, unchanged = len(r.failures), r.unchanged
    on_file(path, "reading", None)
    pages, batch.page_progress = batch.page_progress, lambda what, done, total: on_file(
        path, "reading", f"{done}/{total} pages")
    try:
        batch.add_file(path)
    finally:
        batch.page_progress = pages
    from ingest.loaders import display_name

    names = {str(path), display_name(path)}
    new = r.failures[failures:]
    own = [f.reason for f in new if f.path in names]
    if own:
        on_file(path, "failed", own[0])
    else:  # what is left are failures of single records of a JSONL file: the file and its other records stand
        on_file(path, "unchanged" if r.unchanged > unchanged else "read",
                f"{len(new)} record(s) failed" if new else None)


class _Batch:
    """Documents of one ingest run waiting to be embedded and written (every ``FLUSH_UNITS``)."""

    def __init__(self, writer: KBWriter, report: IngestReport, meta: dict | None = None,
                 writable: frozenset[str] | None = None):
        self.writer = writer
        self.writable = writable
        self.meta = meta or {}  # the run's metadata defaults
        self.report = report
        self.pending: list[tuple[Document, list[Unit]]] = []
        self.n_units = 0
        self.seen: dict[str, str] = {}  # doc_id -> source, for documents of this run
        from ingest.loaders.isolated import IsolatedLoader
        from ingest.loaders.limits import Limits

        self.limits = Limits.from_settings(writer.settings)
        self.screen = _Screen(writer.settings)
        self.max_bytes = self.limits.max_bytes
        self.isolated = IsolatedLoader.from_settings(writer.settings) if writer.settings.parse_isolation else None
        self.page_progress = None  # progress(what, done, total) inside a file: OCR pages

    def __enter__(self) -> _Batch:
        return self

    def __exit__(self, *exc) -> None:
        if self.isolated is not None:
            self.isolated.close()

    def add_file(self, path: Path) -> None:
        """Queue one file's documents; a file that cannot be named or resolved is reported, not fatal."""
        from ingest.loaders import display_name

        problem = _unusable_path(path)
        if problem:
            self.report.failures.append(Failure(display_name(path), problem))
            return
        try:
            overlay = {**self.meta, **read_sidecar(path)}
        except MetaError as e:
            self.report.failures.append(Failure(display_name(path), str(e)))
            return
        if _unchanged_file(path, self.writer, self.max_bytes, meta_hash(apply_meta({}, overlay))):
            self.report.unchanged += 1
            return
        docs = self._load(path)
        if docs is None:
            return
        bad = getattr(docs, "failures", [])  # JSONL records that could not be read: each a failure of its own
        for lineno, reason in bad:
            self.report.failures.append(Failure(f"{path}#line {lineno}", reason))
        if not bad:  # with a record unreadable, its id is unknown: keep the file's stored records
            self._drop_vanished_records(path, docs)
        for doc in docs:
            doc.meta = apply_meta(doc.meta, overlay)
            why = self._not_writable(doc)
            if why:
                self.report.failures.append(Failure(doc.source, why))
                continue
            self._add_doc(doc)
        if self.n_units >= FLUSH_UNITS:
            self.flush()

    def flush(self) -> None:
        self.report.units += self.writer.put_documents(self.pending)
        self.pending, self.n_units = [], 0

    def _load(self, path: Path) -> list[Document] | None:
        from ingest.loaders import LoadError, load_file

        try:
            if self.isolated is not None:
                return self.isolated.load(path, self.page_progress)
            return load_file(path, limits=self.limits, progress=self.page_progress)
        except LoadError as e:
            self.report.failures.append(Failure(str(path), e.reason))
        except Exception as e:  # a loader bug on odd input must not sink the batch
            self.report.failures.append(Failure(str(path), f"unexpected {type(e).__name__}: {e}"))
        return None

    def _add_doc(self, doc: Document) -> None:
        w, r = self.writer, self.report
        clash = self._id_clash(doc)
        if clash:
            r.failures.append(Failure(doc.source, clash))
            return
        self.seen[doc.doc_id] = doc.source
        if w.is_unchanged(doc):
            r.unchanged += 1
            return
        r.warnings.extend(Failure(doc.source, w) for w in doc.meta.get("warnings") or [])
        if not self.screen.passes(doc, r):
            return
        units = document_units(doc, w.settings)
        if not units:
            r.failures.append(Failure(doc.source, "no text to index"))
            return
        if w.store.doc_hash(doc.doc_id) is None:
            r.added += 1
        else:
            r.updated += 1
        r.chars += sum(len(b.text) for b in doc.blocks)
        self.pending.append((doc, units))
        self.n_units += len(units)

    def _id_clash(self, doc: Document) -> str | None:
        """Why ``doc`` may not be written: its id already names a document from another source.

        JSONL ids are the records' own ("1", "2"... in many files): replacing silently would lose
        a document, so the record is reported instead. Moving a JSONL file: delete the old path first."""
        other = self.seen.get(doc.doc_id)
        if other is None:
            other = self.writer.store.doc_sources([doc.doc_id]).get(doc.doc_id, (None, None))[0]
        if other is None or other == doc.source:
            return None
        return (f"id {doc.doc_id!r} already names another document ({other}); ids must be unique in a "
                "knowledge base: give this record another id, or delete that document first")

    def _drop_vanished_records(self, path: Path, docs: list[Document]) -> None:
        """A re-ingested JSONL file replaces its record set: records no longer in it are deleted."""
        source = str(Path(path).expanduser().resolve())
        if all(d.source == source for d in docs):
            return  # one document per file: replaced by doc_id as usual
        stale = set(self.writer.store.doc_ids_for_source(source)) - {d.doc_id for d in docs}
        if self.writable is not None:
            kept = {i for i in stale if outside_groups(self.writer.store.doc_groups(i)[1], self.writable)}
            for i in sorted(kept):
                self.report.failures.append(Failure(f"{source}#{i}", "this record is gone from the file but belongs "
                                                    "to groups this API key may not change: it is kept"))
            stale -= kept
        self.report.removed += self.writer.delete_docs(sorted(stale))

    def _not_writable(self, doc: Document) -> str | None:
        """Why this run's writer may not file ``doc`` (its groups, or those of the document it replaces)."""
        if self.writable is None:
            return None
        why = outside_groups(doc.meta.get("groups"), self.writable)
        if why:
            return why
        exists, old = self.writer.store.doc_groups(doc.doc_id)
        if exists and outside_groups(old, self.writable):
            return f"it would replace a document this API key may not change ({outside_groups(old, self.writable)})"
        return None


class _Screen:
    """Ingestion screening (``screen: off | flag | reject``, docqa/screening/screen.py): blocklisted
    claims, text aimed at a model, secrets. A flagged document keeps its flags in ``meta["screen"]``
    (``docqa docs`` shows them) and is listed in the report; under ``reject`` it is a failure instead.
    At answer time the same rules mark the retrieved passages again (prompt, guard), so KBs ingested
    before screening existed, or with it off, are covered too."""

    def __init__(self, settings: Settings):
        from docqa.settings import ScreenMode

        self.mode = settings.screen
        self.reject = self.mode is ScreenMode.REJECT
        self.blocklist = None
        if self.mode is not ScreenMode.OFF:
            from docqa.screening import Blocklist, check_available, compliance_dir

            check_available()
            self.blocklist = Blocklist.load(compliance_dir(settings))

    def passes(self, doc: Document, report: IngestReport) -> bool:
        if self.blocklist is None:
            return True
        from docqa.screening import screen_text

        text = "\n".join([doc.title or "", *(b.text for b in doc.blocks)])
        flags = screen_text(text, self.blocklist)
        if not flags:
            return True
        found = "; ".join(f"{f.kind} {f.match!r}" for f in flags[:3])
        if self.reject:
            report.failures.append(Failure(doc.source, f"rejected by screening (screen: reject): {found}"))
            return False
        doc.meta["screen"] = [f.to_dict() for f in flags]
        report.flagged.append({"source": doc.source, "doc_id": doc.doc_id, "flags": doc.meta["screen"]})
        return True


def _unusable_path(path: Path) -> str | None:
    """Why ``path`` cannot be ingested before it is even opened, or None: a symlink loop (the path
    never resolves), or a file name that is not valid UTF-8 (it could be neither stored nor cited)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8 (shown escaped): rename the file"
    try:
        Path(path).expanduser().resolve(strict=False)
    except RuntimeError:
        return "symbolic link loop: the path never reaches a file"
    except OSError as e:
        return f"cannot resolve the path: {e.strerror or e}"
    return None


def _unchanged_file(path: Path, writer: KBWriter, max_bytes: int, want_meta: str) -> bool:
    """True when a file's bytes hash to the content hash stored for it and its metadata (``want_meta``:
    the meta_hash it would get) is the stored one, so it is skipped without being parsed (loaders hash
    the file's bytes). JSONL hashes per record: always parsed."""
    p = Path(path).expanduser().resolve()
    if p.suffix.lower() == ".jsonl":
        return False
    doc_id = doc_id_for_path(str(p))
    stored = writer.store.doc_hash(doc_id)
    if stored is None or (writer.store.doc_meta_hash(doc_id) or EMPTY_HASH) != want_meta:
        return False
    try:
        if not p.is_file() or p.stat().st_size > max_bytes:
            return False  # let the loader report it
        with open(p, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == stored
    except OSError:
        return False


def delete_documents(kb: str, targets: list[str], settings: Settings) -> tuple[list[str], list[str]]:
    """Delete documents given by doc_id, file path (a JSONL path: all its records) or folder (every
    document ingested from below it). Returns (deleted doc_ids, targets that matched nothing).
    All deletions are one commit."""
    with KBWriter(kb, settings, create=False) as writer:
        ids: dict[str, None] = {}
        missing: list[str] = []
        for t in targets:
            found = _resolve_target(writer.store, t)
            ids.update(dict.fromkeys(found))
            if not found:
                missing.append(t)
        writer.delete_docs(list(ids))
        if writer.changed:
            writer.commit()
    return list(ids), missing


def _resolve_target(store, target: str) -> list[str]:
    if store.doc_hash(target) is not None:
        return [target]
    p = Path(target).expanduser().resolve()
    if p.is_dir():
        return store.doc_ids_under(str(p))
    return store.doc_ids_for_source(str(p))


def reindex(kb: str, settings: Settings, build: dict, *, progress: bool = True) -> IngestReport:
    """Rebuild every unit of ``kb`` from its stored documents with new build settings
    (chunker, embedding model...). The old generation serves until the new one is committed."""
    t0 = time.perf_counter()
    old = KnowledgeBase.open(kb, settings)
    report = IngestReport(kb=kb)
    try:
        docs = list(old.store.iter_docs())
    finally:
        old.close()
    with KBWriter(kb, settings, create=False, rebuild=build) as writer:
        pending: list[tuple[Document, list[Unit]]] = []
        for doc in _progress(docs, progress):
            pending.append((doc, document_units(doc, writer.settings)))
            report.chars += sum(len(b.text) for b in doc.blocks)
            if sum(len(u) for _, u in pending) >= FLUSH_UNITS:
                report.units += writer.put_documents(pending)
                pending = []
        report.units += writer.put_documents(pending)
        report.updated = len(docs)
        writer.rechunked()
        report.counts = writer.commit()
    report.seconds = time.perf_counter() - t0
    return report


class _PageProgress:
    """A progress bar of the pages of one file (OCR), shown while that file is read."""

    def __init__(self):
        self.bar = None

    def __call__(self, what: str, done: int, total: int) -> None:
        from tqdm import tqdm

        name = what.split(": ", 1)[0]
        if self.bar is None or self.bar.total != total or self.bar.desc != name:
            self.close()
            self.bar = tqdm(total=total, unit="page", desc=name, leave=False)
        self.bar.n = done
        self.bar.set_postfix_str(what.split(": ", 1)[-1], refresh=True)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress(items: list, enabled: bool):
    if not enabled or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, unit="file", desc="ingest", leave=False)
