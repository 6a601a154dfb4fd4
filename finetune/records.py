"""Reading training files: JSONL (one record a line) or a JSON array, with errors that name the line.

Both the embedding and the LLM jobs read user files through here, so a bad record is always
reported the same way: ``file:LINE: reason``. Lines are split on ``"\\n"`` only: JSON strings may
hold U+2028/U+0085 unescaped, and ``str.splitlines()`` would cut such a record in half.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from docqa.errors import UserError


class DataFormatError(UserError):
    """A training record the user must fix; the message starts with ``path:line:``."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}")


def iter_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, record)`` for every record of a JSONL file or a JSON array file.

    For a JSON array the line number is the line where that element starts, so the message still
    points the user at the right place in the file.
    """
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(p, 0, "file not found")
    text = p.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        yield from _iter_array(p, text)
        return
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip(" \t\r"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(p, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise DataFormatError(p, lineno, f"expected a JSON object, got {type(rec).__name__}")
        yield lineno, rec


def _iter_array(p: Path, text: str) -> Iterator[tuple[int, dict]]:
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    n = len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= n:
            raise DataFormatError(p, text.count("\n", 0, pos) + 1, "unterminated JSON array")
        if text[pos] == "]":
            return
        lineno = text.count("\n", 0, pos) + 1
        try:
            rec, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataFormatError(p, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise DataFormatError(p, lineno, f"expected a JSON object, got {type(rec).__name__}")
        yield lineno, rec


def require_str(path: str | Path, line: int, rec: dict, key: str, *, allow_empty: bool = False) -> str:
    """``rec[key]`` as a string, or a DataFormatError naming the field."""
    v = rec.get(key)
    if v is None:
        raise DataFormatError(path, line, f"missing required field {key!r}")
    if not isinstance(v, str):
        raise DataFormatError(path, line, f"{key!r} must be a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise DataFormatError(path, line, f"{key!r} is empty")
    return v


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    """Write records one per line (UTF-8, not ASCII-escaped)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
