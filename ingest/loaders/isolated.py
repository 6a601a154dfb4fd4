"""Parse files in a child process that enforces a wall-time limit and an address-space cap.

The loaders' own checks (``ingest.loaders.limits``) catch the hostile files they can foresee; this is
the backstop for the rest: a parser that loops or backtracks for minutes, a library that inflates a
stream into gigabytes. The ingest process itself never runs third-party parsers, so it cannot be
hung or pushed into the OOM killer by one file, and the file is reported like any other failure.

One worker serves many files (it is spawned once, ~0.3 s, and imports the parsers once); it is
replaced after a file that killed it, timed out, or grew it past ``RECYCLE_RSS_MB`` (a big file's
memory is not kept for the rest of the batch). The worker ignores SIGINT: Ctrl-C is the parent's to
handle, and closing the parent's loader kills the worker.

The child is started with ``spawn``, not ``fork``: the ingest process runs torch and onnxruntime
thread pools, and a forked child of a threaded process may deadlock on a lock some thread held.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import signal
import time
from pathlib import Path

from docqa.document import Document
from ingest.loaders.errors import LoadError
from ingest.loaders.limits import DEFAULT_LIMITS, MIB, Limits

log = logging.getLogger("docqa.ingest")
RECYCLE_RSS_MB = 1024


def _peak_rss_mb() -> float:
    """This process's own resident high-water mark (VmHWM). ``ru_maxrss`` would not do: Linux keeps it
    across exec, so a spawned child reports the parent's size at the fork."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker(conn, memory_bytes: int) -> None:
    """The child: load files sent over ``conn`` until it is closed."""
    import resource

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    from ingest.loaders import load_file

    while True:
        try:
            path, limits = conn.recv()
        except (EOFError, OSError):
            return

        def progress(what: str, done: int, total: int) -> None:
            conn.send(("progress", what, done, total))

        try:
            reply = ("ok", load_file(path, limits=limits, progress=progress))
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent is gone (Ctrl-C, killed) while we reported progress: nobody to answer
        except LoadError as e:
            reply = ("error", e.reason)
        except MemoryError:
            reply = ("error", "parsing it ran out of memory (parse_memory_mb); the file is too large or hostile")
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as a reason
            reply = ("error", f"unexpected {type(e).__name__}: {e}")
        peak_mb = _peak_rss_mb()
        if reply[0] == "error" and "memory" not in reply[1] and peak_mb * MIB > 0.6 * memory_bytes:
            # parsers report a failed allocation in their own words (lxml: "unknown error")
            reply = ("error", f"{reply[1]}; the parser was at its memory limit (parse_memory_mb="
                              f"{memory_bytes // MIB}) when it failed: the file is too large or hostile")
        try:
            conn.send((*reply, peak_mb))
        except MemoryError:
            conn.send(("error", "its parsed text is too large to hand back (parse_memory_mb)", peak_mb))
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent stopped waiting (Ctrl-C): exit quietly, no traceback on its terminal


class IsolatedLoader:
    """``load(path)`` -> documents, or ``LoadError`` naming what went wrong, as ``load_file`` does;
    but the parsing runs in the worker process under ``timeout_s`` and ``memory_mb``.

    ``last_peak_mb``: the worker's peak resident memory after the last file (MiB), for reports.
    Progress inside a file (OCR pages) is passed to ``load``'s ``progress``; each OCR page reported
    extends the file's time by ``page_timeout_s``, so a 100-page scan is bounded per page."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *, timeout_s: float = 300.0, memory_mb: int = 2048,
                 files_per_worker: int = 500, page_timeout_s: float = 60.0):
        self.limits = limits
        self.timeout_s = timeout_s
        self.page_timeout_s = page_timeout_s
        self.memory_mb = memory_mb
        self.files_per_worker = files_per_worker
        self._proc = None
        self._conn = None
        self._served = 0
        self.last_peak_mb = 0.0

    @classmethod
    def from_settings(cls, settings) -> IsolatedLoader:
        return cls(Limits.from_settings(settings), timeout_s=settings.file_timeout_s,
                   memory_mb=settings.parse_memory_mb, page_timeout_s=settings.ocr_page_timeout_s)

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child, self.memory_mb * MIB), daemon=True,
                                 name="docqa-parser")
        self._proc.start()
        child.close()
        self._conn, self._served = parent, 0

    def load(self, path: str | Path, progress=None) -> list[Document]:
        where = str(Path(path).expanduser().absolute())
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._served += 1
        try:
            self._conn.send((str(path), self.limits))
            deadline = time.monotonic() + self.timeout_s
            page = ""
            while True:
                if not self._conn.poll(max(deadline - time.monotonic(), 0)):
                    self._kill()
                    raise LoadError(where, self._timeout_reason(page))
                msg = self._conn.recv()
                if msg[0] != "progress":
                    status, payload, peak = msg
                    break
                _, page, done, total = msg
                deadline = max(deadline, time.monotonic() + self.page_timeout_s)
                if progress is not None:
                    progress(page, done, total)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            code = self._kill()
            why = "ran out of its memory limit" if code in (-signal.SIGKILL, -signal.SIGSEGV) else "died"
            raise LoadError(where, f"the parser process {why} (exit {code}) on this file "
                                   f"(parse_memory_mb={self.memory_mb}); the file was skipped") from None
        self.last_peak_mb = float(peak)
        if self._served >= self.files_per_worker or peak > RECYCLE_RSS_MB:
            self.close()
        if status == "error":
            raise LoadError(where, payload)
        return payload

    def _timeout_reason(self, page: str) -> str:
        if page and "page" in page:
            return (f"{page.split(': ', 1)[-1]} took longer than the {self.page_timeout_s:g} s per-page limit "
                    "(ocr_page_timeout_s); the file was skipped")
        return (f"parsing took longer than the {self.timeout_s:g} s per-file limit (file_timeout_s); the file was "
                "skipped")

    def _kill(self) -> int | None:
        proc = self._proc
        self._proc = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is None:
            return None
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        return proc.exitcode

    def close(self) -> None:
        """Stop the worker (it is started again by the next ``load``)."""
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            self._conn.close()
        self._conn = None
        self._proc.join(2)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(2)
        self._proc = None

    def __enter__(self) -> IsolatedLoader:
        return self

    def __exit__(self, *exc) -> None:
        self._kill()

