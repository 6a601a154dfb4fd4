"""Documents uploaded over HTTP: checked, staged, then ingested by a background job.

An upload is checked before anything is written: the name is reduced to a plain file name (no
folder, no ``..``, no control characters), its suffix must be one docqa reads, its bytes must be what
the suffix says (``ingest/loaders/sniff.py``), and it must fit ``max_file_mb``. Files are staged under
``<kb>/uploads/.incoming/<job>/`` and, when the job runs, moved to ``<kb>/uploads/<name>``: a document
is identified by its name in the KB, so uploading ``policy.pdf`` again replaces the earlier version
(and a failed replacement puts the earlier file back). The job runs ``ingest_paths`` like
``docqa ingest``: one atomic commit, per-file failures reported, the KB's single-writer lock respected
(the job waits for it, up to ``upload_lock_wait_s``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

from docqa.document import doc_id_for_path
from docqa.errors import UserError
from docqa.kb import kb_path
from docqa.kb.manifest import KBBusy
from docqa.settings import Settings
from ingest.loaders import SUPPORTED_SUFFIXES, mismatch

UPLOADS = "uploads"
_INCOMING = ".incoming"
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


class UploadError(UserError):
    """A file a client sent that cannot be taken: ``status`` 413 (too big), 415 (type) or 422."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def safe_name(raw: str | None) -> str:
    """A client's file name as a plain name in one folder: the last path part, NFC, without control
    or path characters, no leading dots, at most 150 characters (the suffix kept)."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").rsplit("/", 1)[-1])
    name = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    stem = stem[: 150 - len(suffix) - 1] or "upload"
    return f"{stem}.{suffix}" if suffix else stem


def check_file(raw_name: str | None, data: bytes, settings: Settings) -> str:
    """The safe name of an acceptable upload, or UploadError saying why not."""
    name = safe_name(raw_name)
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UploadError(415, f"{name}: unsupported file type {suffix or '(no suffix)'}; supported: "
                               f"{', '.join(SUPPORTED_SUFFIXES)}")
    if not data:
        raise UploadError(422, f"{name}: the file is empty")
    limit = settings.max_file_mb * 2**20
    if len(data) > limit:
        raise UploadError(413, f"{name}: {len(data) / 2**20:.1f} MB is over the limit of {settings.max_file_mb:g} MB "
                               "per file (DOCQA_MAX_FILE_MB)")
    why = mismatch(suffix, data)
    if why:
        raise UploadError(415, f"{name}: {why}")
    return name


@dataclass
class Staged:
    kb: str
    folder: Path  # .incoming/<token>
    names: list[str]

    def final_path(self, settings: Settings, name: str) -> Path:
        return uploads_dir(settings, self.kb) / name

    def doc_ids(self, settings: Settings) -> dict[str, str]:
        return upload_doc_ids(settings, self.kb, self.names)


def uploads_dir(settings: Settings, kb: str) -> Path:
    return kb_path(settings, kb) / UPLOADS


def upload_doc_ids(settings: Settings, kb: str, names: list[str]) -> dict[str, str]:
    """The doc_id each uploaded name gets (it is derived from the file's path, as for ``docqa ingest``)."""
    root = uploads_dir(settings, kb).resolve()
    return {n: doc_id_for_path(str(root / n)) for n in names}


def stage(settings: Settings, kb: str, files: list[tuple[str, bytes]]) -> Staged:
    """Write checked files (``(safe name, bytes)``; names unique) to a fresh staging folder."""
    folder = uploads_dir(settings, kb) / _INCOMING / uuid.uuid4().hex[:16]
    folder.mkdir(parents=True)
    for name, data in files:
        (folder / name).write_bytes(data)
    return Staged(kb, folder, [n for n, _ in files])


def ingest_staged(settings: Settings, staged: Staged, meta: dict, job, *, writable=None) -> dict:
    """The upload job: move the staged files into place, ingest them in one commit, report per file (and per
    record of a JSONL file). ``writable``: the groups the uploader may file documents in (None: any)."""
    from ingest.pipeline import ingest_paths
    from service.metrics import INGESTED, INGESTED_UNITS

    placed = _place(settings, staged)
    job.progress(0, len(placed))
    job.files = {n: {"status": "queued", "detail": None} for n in staged.names}
    on_file = _FileProgress(job, set(staged.names), settings)
    deadline = time.monotonic() + settings.upload_lock_wait_s
    try:
        while True:
            try:
                report = ingest_paths([p for p, _ in placed], staged.kb, settings, progress=False, meta=meta,
                                      writable_groups=writable, on_file=on_file)
                break
            except KBBusy:
                if time.monotonic() >= deadline:
                    raise KBBusy(f"knowledge base {staged.kb!r} stayed locked by another writer for "
                                 f"{settings.upload_lock_wait_s:g} s; upload again later") from None
                job.note = "waiting for the knowledge base's write lock (another ingest is running)"
                time.sleep(1.0)
        job.note = None
    except BaseException:
        _restore(placed)
        raise
    failed, records = {}, {}
    for f in report.failures:
        name, _, record = f.path.partition("#")
        if record:  # one record of a JSONL file: the file and its other records stand
            records.setdefault(Path(name).name, []).append({"record": record, "reason": f.reason})
        else:
            failed[Path(name).name] = f.reason
    _restore([(p, prev) for p, prev in placed if p.name in failed])  # a failed replacement keeps the old file
    _discard([prev for p, prev in placed if p.name not in failed])
    shutil.rmtree(staged.folder, ignore_errors=True)
    job.progress(len(placed), len(placed))
    for what in ("added", "updated", "unchanged"):
        INGESTED.labels(what).inc(getattr(report, what))
    INGESTED.labels("failed").inc(len(failed))
    INGESTED_UNITS.inc(report.units)
    ids = staged.doc_ids(settings)
    job.files = {n: {"status": "failed", "detail": _public_reason(failed[n], settings)} if n in failed else
                 {"status": "ingested", "detail": job.files[n].get("detail")} for n in staged.names}
    result = {"documents": [{"name": n, "doc_id": ids[n], "status": "failed" if n in failed else "ingested",
                             **({"reason": _public_reason(failed[n], settings)} if n in failed else {}),
                             **({"records_failed": records[n]} if n in records else {})}
                            for n in staged.names],
              "added": report.added, "updated": report.updated, "unchanged": report.unchanged,
              "units": report.units, "committed": report.committed, "generation": report.generation}
    if len(failed) == len(staged.names):
        raise UserError("no file could be ingested: " + "; ".join(f"{n}: {_public_reason(r, settings)}"
                                                                    for n, r in failed.items()))
    return result


class _FileProgress:
    """``ingest_paths``' ``on_file``: each file's status in ``job.files`` (the console shows it per file) and
    files done / total in ``job.progress``."""

    def __init__(self, job, names: set[str], settings: Settings):
        self.job, self.names, self.settings, self.done = job, names, settings, set()

    def __call__(self, path: Path | None, status: str, detail: str | None) -> None:
        job = self.job
        if path is None:  # every file read: the embedding of what is left and the commit
            job.note = "embedding and committing"
            return
        name = Path(path).name  # the files of an upload are in one folder, under the names staged
        if name not in self.names:
            return
        job.files[name] = {"status": status, "detail": _public_reason(detail, self.settings) if detail else None}
        if status != "reading":
            self.done.add(name)
        job.progress(len(self.done), len(self.names))


def _public_reason(reason: str, settings: Settings) -> str:
    """A failure reason without the server's folder layout."""
    return reason.replace(str(settings.home.resolve()) + os.sep, "").replace(str(settings.home) + os.sep, "")


def _place(settings: Settings, staged: Staged) -> list[tuple[Path, Path | None]]:
    """Move staged files to their final names; an existing file is kept aside as ``.<name>.prev``."""
    placed = []
    for name in staged.names:
        final = staged.final_path(settings, name)
        prev = None
        if final.exists():
            prev = final.with_name(f".{name}.prev")
            os.replace(final, prev)
        os.replace(staged.folder / name, final)
        placed.append((final, prev))
    return placed


def _restore(placed: list[tuple[Path, Path | None]]) -> None:
    for final, prev in placed:
        if prev is not None and prev.exists():
            os.replace(prev, final)
        elif prev is None:
            final.unlink(missing_ok=True)


def _discard(prevs: list[Path | None]) -> None:
    for prev in prevs:
        if prev is not None:
            prev.unlink(missing_ok=True)


def recover_uploads(settings: Settings, kb: str, stored_hash) -> int:
    """Undo what a server stopped mid-upload left in ``<kb>/uploads`` (its job is reported failed):
    staging folders go; a file whose content is not what the KB committed for it goes back to its
    earlier version (``.<name>.prev``) or, new, is removed. ``stored_hash(doc_id)``: the committed
    content hash or None. Returns how many files were put right."""
    import hashlib

    root = uploads_dir(settings, kb)
    shutil.rmtree(root / _INCOMING, ignore_errors=True)
    if not root.is_dir():
        return 0
    fixed = 0
    for final in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        prev = root / f".{final.name}.prev"
        with open(final, "rb") as f:
            have = hashlib.file_digest(f, "sha256").hexdigest()
        if have == stored_hash(doc_id_for_path(str(final.resolve()))):
            prev.unlink(missing_ok=True)  # committed before the stop: the new version stays
            continue
        _restore([(final, prev if prev.exists() else None)])
        fixed += 1
    for prev in root.glob(".*.prev"):  # an earlier version whose replacement is gone
        os.replace(prev, root / prev.name[1:-5])
        fixed += 1
    return fixed
