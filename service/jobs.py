"""Background jobs of a server (``docqa eval`` over HTTP today; uploads will use it too).

Jobs run one at a time on one worker thread, in submission order: an eval is CPU-bound, and two at
once would only both be slower while the server keeps answering. A job's state (queued, running,
done, failed), its progress and its result are kept in memory for the life of the process; its
files are on disk in its own folder.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("docqa.jobs")
MAX_KEPT = 200  # finished jobs remembered; older ones are forgotten (their files stay on disk)


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

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def public(self) -> dict:
        return {"id": self.id, "kind": self.kind, "kb": self.kb, "status": self.status,
                "progress": {"done": self.done, "total": self.total}, "created": self.created,
                "started": self.started, "finished": self.finished, "error": self.error, "result": self.result}


class JobRunner:
    def __init__(self):
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[tuple[Job, Callable[[Job], dict]]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, kind: str, kb: str, folder: Path, work: Callable[[Job], dict], total: int = 0) -> Job:
        job = Job(uuid.uuid4().hex[:16], kind, kb, folder, total=total)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="docqa-jobs", daemon=True)
                self._thread.start()
        from .metrics import JOBS_QUEUED

        JOBS_QUEUED.inc()
        self._queue.put((job, work))
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished is not None]
        for j in sorted(finished, key=lambda j: j.finished)[: max(0, len(finished) - MAX_KEPT)]:
            del self._jobs[j.id]

    def _work(self) -> None:
        while True:
            job, work = self._queue.get()
            job.status, job.started = "running", time.time()
            try:
                job.result = work(job)
                job.status = "done"
            except Exception as e:  # the job's failure is its status, never the server's
                log.exception("job %s (%s on %s) failed", job.id, job.kind, job.kb)
                job.status, job.error = "failed", f"{type(e).__name__}: {e}"
            finally:
                from .metrics import JOBS, JOBS_QUEUED

                job.finished = time.time()
                JOBS_QUEUED.dec()
                JOBS.labels(job.kind, job.status).inc()
