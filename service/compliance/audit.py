"""The audit log: one JSON line per compliance verdict, appended, never rewritten.

Each record holds: ``request_id, time (UTC ISO 8601), kb, stage, question, draft, verdict,
reason, text`` (the final text the user got), plus ``mode`` and ``score`` for the analyst.

Writes are line-atomic without a lock file: the file is opened with ``O_APPEND`` and each record
goes out in ONE ``write`` call, so concurrent workers (threads or uvicorn processes) never
interleave parts of lines, and an external rotator may move the file at any time (it is reopened
per record). No fsync: a crash can lose the last records the OS had not flushed, never corrupt
earlier ones. JSON is written with U+2028/U+2029/U+0085 escaped, so readers that split on any
line break still see one record per line.

A failing audit write (disk full, read-only mount) is logged and does not fail the reply: the
verdict itself has already been enforced.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("docqa.audit")
_ESCAPES = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}
AUDIT_FIELDS = ("request_id", "time", "kb", "stage", "question", "draft", "verdict", "reason", "text")


def encode_record(record: dict[str, Any]) -> bytes:
    """One record as one UTF-8 line ending in '\\n' (no raw line breaks inside)."""
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
    for raw, esc in _ESCAPES.items():
        line = line.replace(raw, esc)
    return (line + "\n").encode("utf-8")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Appends records to ``path`` (created with its parent directories on first write)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()  # keeps one process's threads from racing on a short write
        self._warned = False

    def check_writable(self) -> bool:
        """Say at start-up, not at the first verdict, when the log cannot be written (a KB served from
        a read-only volume keeps its audit log in the KB folder by default: set ``audit_log``)."""
        folder = self.path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        target = self.path if self.path.exists() else folder
        if os.access(target, os.W_OK):
            return True
        log.error("the audit log %s cannot be written (read-only volume?): verdicts will not be recorded; set "
                  "audit_log (DOCQA_AUDIT_LOG) to a writable path, e.g. /var/log/docqa/{kb}.jsonl", self.path)
        self._warned = True
        return False

    def append(self, record: dict[str, Any]) -> bool:
        """Append one record; True when written. ``time`` is filled in when missing."""
        record = {"time": now_iso(), **record}
        data = encode_record(record)
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    written = os.write(fd, data)
                    while written < len(data):  # only on a nearly full disk; the rest still appends
                        written += os.write(fd, data[written:])
                finally:
                    os.close(fd)
            return True
        except OSError as e:
            if not self._warned:
                log.error("cannot write the audit log %s: %s (replies continue; verdicts are not recorded)",
                          self.path, e)
                self._warned = True
            return False


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every record of an audit log, oldest first (split on '\\n' only)."""
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").split("\n") if line.strip()]
