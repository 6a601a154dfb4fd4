"""Ingestion: files -> documents -> units -> one atomic KB commit, with a per-file report.

A bad file never stops the batch: its failure (path and reason) goes into the report and the rest
is ingested. Unchanged files (same content hash) cost one hash and nothing else. Units are
embedded in batches across documents, so thousands of small JSONL records embed as fast as a few
big files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .chunking import chunk_document
from .document import Document, doc_id_for_path
from .kb import KBWriter, KnowledgeBase
from .settings import Settings
from .units import Unit

FLUSH_UNITS = 512  # embed and write in batches of about this many units


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class IngestReport:
    kb: str
    files: int = 0
    added: int = 0  # documents new to the KB
    updated: int = 0  # documents whose content changed
    unchanged: int = 0
    units: int = 0  # units written
    chars: int = 0  # characters of text ingested
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)  # KB totals after the commit

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["failures"] = [f.__dict__ for f in self.failures]
        return d


def ingest_paths(paths: list[str | Path], kb: str, settings: Settings, *, progress: bool = True) -> IngestReport:
    """Ingest files and folders (recursively) into KB ``kb``, creating it if needed."""
    from .loaders import iter_files, load_file
    from .loaders.errors import LoadError

    t0 = time.perf_counter()
    report = IngestReport(kb=kb)
    files = list(iter_files(paths))
    report.files = len(files)
    max_bytes = int(settings.max_file_mb * 2**20)
    with KBWriter(kb, settings) as writer:
        pending: list[tuple[Document, list[Unit]]] = []
        bar = _progress(files, progress)
        for path in bar:
            try:
                docs = load_file(path, max_bytes=max_bytes)
            except LoadError as e:
                report.failures.append(Failure(str(path), e.reason))
                continue
            except Exception as e:  # a loader bug on odd input must not sink the batch
                report.failures.append(Failure(str(path), f"unexpected {type(e).__name__}: {e}"))
                continue
            for doc in docs:
                if writer.is_unchanged(doc):
                    report.unchanged += 1
                    continue
                units = chunk_document(doc, writer.settings)
                if not units:
                    report.failures.append(Failure(doc.source, "no text to index"))
                    continue
                is_update = writer.store.doc_hash(doc.doc_id) is not None
                report.updated += is_update
                report.added += not is_update
                report.chars += sum(len(b.text) for b in doc.blocks)
                pending.append((doc, units))
            if sum(len(u) for _, u in pending) >= FLUSH_UNITS:
                report.units += writer.put_documents(pending)
                pending = []
        report.units += writer.put_documents(pending)
        if writer.changed:
            report.counts = writer.commit()
        else:
            report.counts = writer.store.counts()
    report.seconds = time.perf_counter() - t0
    return report


def delete_documents(kb: str, targets: list[str], settings: Settings) -> tuple[list[str], list[str]]:
    """Delete documents given by doc_id or by file path. Returns (deleted doc_ids, targets not found)."""
    with KBWriter(kb, settings, create=False) as writer:
        deleted: list[str] = []
        missing: list[str] = []
        for t in targets:
            ids = [t] if writer.store.doc_hash(t) is not None else []
            if not ids:
                p = str(Path(t).expanduser().resolve())
                ids = writer.store.doc_ids_for_source(p) or (
                    [doc_id_for_path(p)] if writer.store.doc_hash(doc_id_for_path(p)) else [])
            if ids:
                writer.delete_docs(ids)
                deleted.extend(ids)
            else:
                missing.append(t)
        if writer.changed:
            writer.commit()
    return deleted, missing


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
            pending.append((doc, chunk_document(doc, writer.settings)))
            report.chars += sum(len(b.text) for b in doc.blocks)
            if sum(len(u) for _, u in pending) >= FLUSH_UNITS:
                report.units += writer.put_documents(pending)
                pending = []
        report.units += writer.put_documents(pending)
        report.updated = len(docs)
        report.counts = writer.commit()
    report.seconds = time.perf_counter() - t0
    return report


def _progress(items: list, enabled: bool):
    if not enabled or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, unit="file", desc="ingest", leave=False)
