"""Progress inside one file (OCR of a long scan: "page 3/100"), reported to whoever loads it.

A loader calls ``report(what, done, total)`` as it goes; the caller of ``load_file`` installs a hook
with ``reporting(hook)``: the ingest progress bar in-process, the pipe to the parent in the parser
process (``isolated``), where each report also extends the file's time limit by one page's worth.
A context variable, so concurrent ingests in threads (uploads) each see their own hook.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Hook = Callable[[str, int, int], None]
_hook: contextvars.ContextVar[Hook | None] = contextvars.ContextVar("docqa_load_progress", default=None)


def report(what: str, done: int, total: int) -> None:
    hook = _hook.get()
    if hook is not None:
        hook(what, done, total)


@contextlib.contextmanager
def reporting(hook: Hook | None) -> Iterator[None]:
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)
