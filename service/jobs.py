"""Background jobs of a server: evals (``POST /v1/kbs/{kb}/eval``) and document uploads.

Each lane (``eval``, ``ingest``) has one worker thread that runs its jobs one at a time in submission
order: an eval is CPU-bound and two at once would only both be slower, and ingests of a KB must take
its one write lock in turn anyway. Lanes are separate so an upload never waits behind a long eval.

A job's record (status, progress, result) is written to ``state_dir/<id>.json`` at every change of
status, so it survives the process: after a crash or ``kill -9``, the next start marks the jobs that
were queued or running as failed, saying so (an ingest commits atomically or not at all, so nothing
of such a job is in the KB), and ``GET /v1/jobs/{id}`` still answers for them.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("docqa.jobs")
MAX_KEPT = 200  # finished jobs remembered in memory; older ones are read back from disk when asked for
INTERRUPTED = ("the server stopped (crash, kill or restart) before this job finished; an ingest commits "
               "all or nothing, so nothing of this job is in the knowledge base: submit it again")


@dataclass
class Job:
    id: str
    kind: str
    kb: str
    folder: Path
    status: str = "queued"  # queued | running | done | failed
    done: int = 0
    total: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: dict | None = None
    owner: str | None = None  # the API key id that submitted it (None: loopback mode)
    note: str | None = None  # what the job is doing now, e.g. waiting for the KB's write lock
    files: dict[str, dict] | None = None  # an upload's files: name -> {status, detail} as each goes

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def public(self) -> dict:
        return {"id": self.id, "kind": self.kind, "kb": self.kb, "status": self.status,
                "progress": {"done": self.done, "total": self.total}, "created": self.created,
                "started": self.started, "finished": self.finished, "error": self.error, "result": self.result,
                "note": self.note,
                "files": None if self.files is None else [{"name": n, **v} for n, v in list(self.files.items())]}

    def to_json(self) -> dict:
        return {**asdict(self), "folder": str(self.folder)}

    @classmethod
    def from_json(cls, d: dict) -> Job:
        return cls(**{**d, "folder": Path(d["folder"])})


class JobRunner:
    """``state_dir``: where job records are kept across restarts (None: in memory only)."""

    def __init__(self, state_dir: Path | None = None):
        self._jobs: dict[str, Job] = {}
        self._lanes: dict[str, tuple[queue.Queue, threading.Thread]] = {}
        self._lock = threading.Lock()
        self.state_dir = state_dir
        if state_dir is not None:
            self._recover()

    def submit(self, kind: str, kb: str, folder: Path, work: Callable[[Job], dict], total: int = 0,
               owner: str | None = None, lane: str | None = None) -> Job:
        job = Job(uuid.uuid4().hex[:16], kind, kb, folder, total=total, owner=owner)
        lane = lane or kind
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
            q, thread = self._lanes.get(lane, (None, None))
            if thread is None or not thread.is_alive():
                q = q or queue.Queue()
                thread = threading.Thread(target=self._work, args=(q,), name=f"docqa-jobs-{lane}", daemon=True)
                self._lanes[lane] = (q, thread)
                thread.start()
        from service.metrics import JOBS_QUEUED

        JOBS_QUEUED.inc()
        self._save(job)
        q.put((job, work))
        return job

    def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None and self.state_dir is not None and len(job_id) <= 64 and job_id.isalnum():
            job = self._read(self.state_dir / f"{job_id}.json")
        return job

    def list(self, kind: str | None = None, kb: str | None = None) -> list[Job]:
        """Every job this runner knows (in memory and recorded on disk), newest first; ``kind``/``kb`` narrow it."""
        jobs = dict(self._jobs)
        if self.state_dir is not None and self.state_dir.is_dir():
            for path in self.state_dir.glob("*.json"):
                if path.stem not in jobs:
                    job = self._read(path)
                    if job is not None:
                        jobs[job.id] = job
        out = [j for j in jobs.values() if (kind is None or j.kind == kind) and (kb is None or j.kb == kb)]
        return sorted(out, key=lambda j: j.created or 0, reverse=True)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished is not None]
        for j in sorted(finished, key=lambda j: j.finished)[: max(0, len(finished) - MAX_KEPT)]:
            del self._jobs[j.id]

    def _work(self, q: queue.Queue) -> None:
        while True:
            job, work = q.get()
            job.status, job.started = "running", time.time()
            self._save(job)
            try:
                job.result = work(job)
                job.status = "done"
            except Exception as e:  # the job's failure is its status, never the server's
                log.exception("job %s (%s on %s) failed", job.id, job.kind, job.kb)
                job.status, job.error = "failed", _why(e)
            finally:
                from service.metrics import JOBS, JOBS_QUEUED

                job.finished, job.note = time.time(), None
                JOBS_QUEUED.dec()
                JOBS.labels(job.kind, job.status).inc()
                self._save(job)

    # --- records on disk ---
    def _save(self, job: Job) -> None:
        if self.state_dir is None:
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / f".{job.id}.tmp"
            tmp.write_text(json.dumps(job.to_json(), ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.state_dir / f"{job.id}.json")
        except OSError as e:  # a read-only home: jobs still run, their records live in memory only
            log.warning("cannot record job %s in %s (%s); it is kept in memory only", job.id, self.state_dir, e)

    @staticmethod
    def _read(path: Path) -> Job | None:
        try:
            return Job.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _recover(self) -> None:
        """Jobs a previous process left queued or running: failed, with the reason."""
        if not self.state_dir.is_dir():
            return
        for path in sorted(self.state_dir.glob("*.json")):
            job = self._read(path)
            if job is None or job.status not in ("queued", "running"):
                continue
            job.status, job.error, job.finished, job.note = "failed", INTERRUPTED, time.time(), None
            log.warning("job %s (%s on %s) was cut off by a server stop: marked failed", job.id, job.kind, job.kb)
            self._jobs[job.id] = job
            self._save(job)


def _why(e: Exception) -> str:
    from docqa.kb import KBError

    return str(e) if isinstance(e, (KBError, ValueError)) else f"{type(e).__name__}: {e}"
