"""Eval sets: one JSON object a line.

    {"question": "...", "answers": ["..."]?, "doc_ids": ["..."]? | "sources": ["path"]?,
     "unanswerable": false?, "history": [{"role", "content"}]?, "filters": {...}?, "id": "..."?}

``answers`` are gold spans (any one counts), ``doc_ids``/``sources`` the documents that hold the
answer (else a retrieved passage containing a gold span is gold), ``unanswerable`` marks a question
the KB must refuse. ``filters`` are the metadata filters the question is asked with (``docqa.filters``;
as ignored today). A malformed line is skipped with its line number and reason, never the whole set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from docqa.errors import UserError


@dataclass
class EvalRow:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    unanswerable: bool = False
    history: list[dict] = field(default_factory=list)
    filters: dict = field(default_factory=dict)
    line: int = 0

    def to_dict(self) -> dict:
        d = {"id": self.id, "question": self.question, "answers": self.answers, "unanswerable": self.unanswerable}
        for key in ("doc_ids", "sources", "history", "filters"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d


@dataclass
class EvalSet:
    rows: list[EvalRow]
    skipped: list[tuple[int, str]]  # (line, why)
    path: str = ""


def _strings(value, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in value):
        raise UserError(f"'{name}' must be a string or a list of strings")
    return [str(x) for x in value]


def parse_row(obj, line: int) -> EvalRow:
    if not isinstance(obj, dict):
        raise UserError(f"expected a JSON object, got {type(obj).__name__}")
    q = obj.get("question")
    if not isinstance(q, str) or not q.strip():
        raise UserError("'question' must be a non-empty string")
    unans = obj.get("unanswerable", False)
    if not isinstance(unans, bool):
        raise UserError("'unanswerable' must be true or false")
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(isinstance(t, dict) and isinstance(t.get("content"), str)
                                                and t.get("role") in ("user", "assistant") for t in history):
        raise UserError("'history' must be a list of {\"role\": \"user\"|\"assistant\", \"content\": str}")
    filters = obj.get("filters") or {}
    if not isinstance(filters, dict):
        raise UserError("'filters' must be an object")
    from docqa.filters import parse_where

    parse_where(filters)  # FilterError (a ValueError) names the field
    rid = obj.get("id", line)
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise UserError("'id' must be a string or an integer")
    row = EvalRow(id=str(rid), question=q.strip(), answers=_strings(obj.get("answers"), "answers"),
                  doc_ids=_strings(obj.get("doc_ids"), "doc_ids"), sources=_strings(obj.get("sources"), "sources"),
                  unanswerable=unans, history=history, filters=filters, line=line)
    if unans and row.answers:
        raise UserError("an unanswerable question cannot have 'answers'")
    return row


def load_eval_set(path: str | Path) -> EvalSet:
    """Every valid row of the JSONL file; malformed lines are skipped with their line number."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"eval set {path} not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"eval set {path} is not UTF-8 ({e})") from None
    rows: list[EvalRow] = []
    skipped: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = parse_row(json.loads(line), n)
        except json.JSONDecodeError as e:
            skipped.append((n, f"invalid JSON ({e.msg} at column {e.colno})"))
            continue
        except ValueError as e:
            skipped.append((n, str(e)))
            continue
        if row.id in seen:
            skipped.append((n, f"duplicate id {row.id!r} (first on line {seen[row.id]})"))
            continue
        seen[row.id] = n
        rows.append(row)
    if not rows:
        why = f"; {len(skipped)} malformed line(s), the first: line {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise UserError(f"eval set {path} has no usable rows{why}")
    return EvalSet(rows, skipped, str(path))


def write_eval_set(rows: list[EvalRow], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    return path
