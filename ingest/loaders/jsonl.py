"""JSONL loader: one Document per line ``{"id": ..., "title": ..., "text": ...}``.

Records are split on ``"\\n"`` only. ``str.splitlines()`` would also split on U+2028, U+2029
and U+0085, which JSON allows unescaped inside strings, and so cut real records in half.
A bad line (invalid JSON, a missing field, over ``max_record_mb``, a duplicate id) is a failure of
its own, reported with its line number, and the file's other records are ingested: one broken record
must not drop a corpus, and nothing is dropped silently (``RecordFailures.failures``). A file with no
usable record fails whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

from docqa.document import Document, sha256_hex
from docqa.filters import FilterError, normalize_groups
from ingest.loaders.errors import LoadError
from ingest.loaders.limits import DEFAULT_LIMITS, Limits, size_text
from ingest.loaders.text import decode_text, text_to_blocks

_RESERVED = ("id", "title", "text")  # the rest of a record is metadata (``groups``: who may read it)


class RecordFailures(list):
    """The documents of a JSONL file, with ``failures``: (line, reason) of each record that could not be read."""

    def __init__(self, docs: list[Document], failures: list[tuple[int, str]]):
        super().__init__(docs)
        self.failures = failures

    def __reduce__(self):  # through the parser process's pipe, failures and all
        return (RecordFailures, (list(self), self.failures))


def load_jsonl(path: Path, data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[Document]:
    """Every non-blank line is a record: ``id`` and ``text`` required, ``title`` optional.

    ``doc_id`` is the record's id as a string, ``source`` is ``"<abs path>#<id>"``, the content
    hash covers title and text, and any extra keys are kept in ``meta``.
    """
    text = decode_text(path, data)
    docs: list[Document] = []
    failures: list[tuple[int, str]] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip(" \t\r"):
            continue
        try:
            if len(line) * 4 > limits.max_record_bytes and len(line.encode("utf-8")) > limits.max_record_bytes:
                _fail(path, lineno, f"the record is {size_text(len(line.encode('utf-8')))}, over the "
                                    f"{size_text(limits.max_record_bytes, limit=True)} record-size limit "
                                    "(max_record_mb)")
            doc = _record_document(path, lineno, line)
            if doc.doc_id in first_line:
                _fail(path, lineno, f"duplicate id {doc.doc_id!r} (first used on line {first_line[doc.doc_id]})")
        except LoadError as e:
            failures.append((lineno, e.reason))
            continue
        first_line[doc.doc_id] = lineno
        docs.append(doc)
    if not docs:
        raise LoadError(str(path), failures[0][1] if len(failures) == 1 else
                        f"no usable record: {len(failures)} bad, the first {failures[0][1]}" if failures else
                        "no records found (only blank lines)")
    return RecordFailures(docs, failures) if failures else docs


def _record_document(path: Path, lineno: int, line: str) -> Document:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        _fail(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})")
    if not isinstance(record, dict):
        _fail(path, lineno, f"expected a JSON object, got {type(record).__name__}")
    rid = record.get("id")
    if rid is None or isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid) == "":
        reason = "missing required field 'id'" if rid is None else "'id' must be a non-empty string or integer"
        _fail(path, lineno, reason)
    doc_id = str(rid)
    body = record.get("text")
    if not isinstance(body, str):
        _fail(path, lineno, "missing required field 'text'" if body is None else "'text' must be a string")
    title = record.get("title")
    if title is not None and not isinstance(title, str):
        _fail(path, lineno, "'title' must be a string")
    title = title or ""
    blocks = text_to_blocks(body).blocks
    if not blocks:
        _fail(path, lineno, f"record {doc_id!r} has empty 'text'")
    extra = {k: v for k, v in record.items() if k not in _RESERVED}
    if "groups" in extra:
        try:
            extra["groups"] = normalize_groups(extra["groups"], "'groups'")
        except FilterError as e:
            _fail(path, lineno, str(e))
    return Document(
        doc_id=doc_id,
        source=f"{path}#{doc_id}",
        title=title.strip() or doc_id,
        blocks=blocks,
        content_hash=sha256_hex(title + "\n" + body),
        meta={**extra, "format": "jsonl", "path": str(path), "line": lineno},
    )


def _fail(path: Path, lineno: int, reason: str) -> NoReturn:
    raise LoadError(str(path), f"line {lineno}: {reason}")
