"""Dify's External Knowledge API, as docqa answers it: ``POST {endpoint}/retrieval``.

Contract (docs.dify.ai, "External Knowledge API"): ``Authorization: Bearer <key>`` (a docqa API key),
body ``{"knowledge_id", "query", "retrieval_setting": {"top_k", "score_threshold"}, "metadata_condition"?}``,
reply ``{"records": [{"content", "score", "title", "metadata"}]}`` (``metadata`` an object, never null), errors
``{"error_code", "error_msg"}``: 1001 a malformed Authorization header, 1002 a key that fails, 2001 a knowledge
base that does not exist (or that the key may not read: the two are not told apart, so a key cannot probe
which KBs exist). docqa adds 4001 (a request that does not follow the contract, naming the field) and 4002 (a
metadata condition docqa cannot apply), and 5001 while it loads (HTTP 503).

``knowledge_id`` is the KB's name. ``score`` is ``docqa.search.relevance`` (0-1: the reranker's relevance, or
the hybrid RRF score as a share of the best possible), so ``score_threshold`` means "at least this close to
ranked first by both retrievers". ``metadata_condition`` becomes docqa's document filter (``docqa.filters``),
applied inside retrieval with the key's groups, so a document the key may not read is never a candidate.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from docqa.errors import DocqaError
from docqa.filters import MAX_CONDITIONS, MAX_VALUES, Condition, DocFilter
from service.schemas import Text

AUTH_FORMAT, AUTH_FAILED, NO_KNOWLEDGE, BAD_REQUEST, BAD_CONDITION, UNAVAILABLE = 1001, 1002, 2001, 4001, 4002, 5001
MAX_TOP_K = 100

# Dify's comparison operators -> docqa's condition operators (docqa.filters.OPS; range ops as (op, bound))
OPERATORS: dict[str, str] = {
    "contains": "contains", "not contains": "not_contains", "start with": "prefix", "end with": "suffix",
    "is": "eq", "is not": "ne", "in": "in", "not in": "nin", "empty": "empty", "not empty": "not_empty",
    "null": "empty", "not null": "not_empty",  # the older docs' names
    "=": "eq", "≠": "ne", "!=": "ne", ">": "gt", "<": "lt", "≥": "gte", ">=": "gte", "≤": "lte", "<=": "lte",
    "before": "lt", "after": "gt",
}
_NUMERIC = {"=", "≠", "!=", ">", "<", "≥", ">=", "≤", "<="}
_DATES = {"before", "after"}
_NO_VALUE = {"empty", "not empty", "null", "not null"}
_LISTS = {"in", "not in"}
_TEXT = set(OPERATORS) - _NUMERIC - _DATES - _NO_VALUE - _LISTS
NUMBER_TEXT = r"^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$"
DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z


class DifyError(DocqaError):
    """A reply in Dify's error shape: ``{"error_code", "error_msg"}`` with an HTTP status."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"error_code": self.code, "error_msg": self.message}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RetrievalSetting(_Model):
    top_k: int = Field(ge=1, le=MAX_TOP_K)
    score_threshold: float = Field(default=0.0, ge=0.0, le=1.0)


class MetaCondition(_Model):
    name: StrictStr | list[StrictStr]
    comparison_operator: StrictStr
    value: StrictStr | float | int | list[StrictStr | float | int] | None = None


class MetadataCondition(_Model):
    logical_operator: Literal["and", "or"] = "and"
    conditions: list[MetaCondition] = Field(max_length=MAX_CONDITIONS)


class RetrievalRequest(_Model):
    knowledge_id: StrictStr = Field(min_length=1, max_length=64)
    query: Text
    retrieval_setting: RetrievalSetting
    metadata_condition: MetadataCondition | None = None


def request_schema(max_chars: int) -> dict:
    """The JSON Schema of the request: exactly what ``parse_request`` and ``doc_filter`` accept (a schema-valid
    request is never refused for its shape)."""
    from service.openapi import NOT_BLANK

    name = {"type": "string", "minLength": 1, "maxLength": 64}
    names = {"anyOf": [name, {"type": "array", "items": name, "minItems": 1, "maxItems": MAX_CONDITIONS}]}
    scalar = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    values = {"anyOf": [{"type": "string"}, {"type": "array", "items": scalar, "minItems": 1,
                                              "maxItems": MAX_VALUES}]}
    number = {"anyOf": [{"type": "number"}, {"type": "string", "pattern": NUMBER_TEXT}]}
    date = {"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_TIMESTAMP},
                      {"type": "string", "pattern": DATE_TEXT}]}

    def shape(ops: set[str], value: dict | None) -> dict:
        props = {"name": names, "comparison_operator": {"enum": sorted(ops)}}
        if value is not None:
            props["value"] = value
        return {"type": "object", "required": ["name", "comparison_operator"] + (["value"] if value else []),
                "properties": props}

    condition = {"oneOf": [shape(_NO_VALUE, None), shape(_TEXT, scalar), shape(_NUMERIC, number),
                           shape(_DATES, date), shape(_LISTS, values)]}
    return {"type": "object", "required": ["knowledge_id", "query", "retrieval_setting"], "properties": {
        "knowledge_id": {"type": "string", "minLength": 1, "maxLength": 64, "description": "the knowledge base"},
        "query": {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": NOT_BLANK},
        "retrieval_setting": {"type": "object", "required": ["top_k"], "properties": {
            "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
            "score_threshold": {"type": "number", "minimum": 0, "maximum": 1}}},
        "metadata_condition": {"type": "object", "required": ["conditions"], "properties": {
            "logical_operator": {"enum": ["and", "or"]},
            "conditions": {"type": "array", "items": condition, "maxItems": MAX_CONDITIONS}}}}}


def parse_request(raw: bytes) -> RetrievalRequest:
    """The request, or ``DifyError`` 4001 naming the first field that does not follow the contract."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise DifyError(400, BAD_REQUEST, "the body is not JSON: send the retrieval request as a JSON object") from None
    if not isinstance(body, dict):
        raise DifyError(400, BAD_REQUEST, "the body must be a JSON object with knowledge_id, query and "
                                          "retrieval_setting")
    try:
        return RetrievalRequest.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "body"
        what = "is required" if err["type"] == "missing" else err["msg"].lower()
        raise DifyError(400, BAD_REQUEST, f"{where}: {what}") from None


def doc_filter(groups, cond: MetadataCondition | None) -> DocFilter:
    """The caller's groups (None: all) and Dify's ``metadata_condition`` as docqa's document filter."""
    from docqa.filters import doc_filter as base

    flt = base(groups)
    if cond is None or not cond.conditions:
        return flt
    return DocFilter(flt.groups, tuple(_condition(i, c) for i, c in enumerate(cond.conditions)),
                     any_of=cond.logical_operator == "or")


def _condition(i: int, c: MetaCondition) -> Condition:
    where = f"metadata_condition.conditions.{i}"
    names = [c.name] if isinstance(c.name, str) else list(c.name)
    if not names or not all(0 < len(n) <= 64 for n in names):
        raise DifyError(400, BAD_REQUEST, f"{where}.name: one or more field names of 1-64 characters")
    op = c.comparison_operator.strip()
    mapped = OPERATORS.get(op)
    if mapped is None:
        raise DifyError(400, BAD_CONDITION, f"{where}.comparison_operator: {op!r} is not supported; docqa "
                                            f"supports {', '.join(sorted(OPERATORS))}")
    field, also = names[0], tuple(names[1:])
    if op in _NO_VALUE:
        return Condition(field, mapped, also=also)
    if c.value is None:
        raise DifyError(400, BAD_REQUEST, f"{where}.value: {op!r} needs a value")
    if mapped in ("in", "nin"):
        values = c.value if isinstance(c.value, list) else [v.strip() for v in str(c.value).split(",")]
        if not values or len(values) > MAX_VALUES:
            raise DifyError(400, BAD_REQUEST, f"{where}.value: 1-{MAX_VALUES} values")
        return Condition(field, mapped, tuple(values), also=also)
    if isinstance(c.value, list):
        raise DifyError(400, BAD_REQUEST, f"{where}.value: {op!r} takes one value, not a list")
    value: Any = c.value
    if op in _NUMERIC:
        value = _number(where, value)
    elif op in _DATES:
        value = _date(where, value)
    if mapped in ("gt", "gte", "lt", "lte"):
        return Condition(field, "range", bounds=((mapped, value),), also=also)
    return Condition(field, mapped, (value,), also=also)


def _number(where: str, v) -> float | int:
    if isinstance(v, str):
        try:
            v = float(v) if any(ch in v for ch in ".eE") else int(v)
        except ValueError:
            raise DifyError(400, BAD_REQUEST, f"{where}.value: {v!r} is not a number") from None
    if isinstance(v, float) and math.isnan(v):
        raise DifyError(400, BAD_REQUEST, f"{where}.value: not a number")
    return v


def _date(where: str, v) -> str:
    """A date as docqa's metadata holds dates (ISO text, compared as text): a Unix timestamp (Dify's time
    fields) becomes UTC ISO; text that starts with an ISO date (YYYY-MM-DD...) stays as given."""
    import re

    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if not 0 <= v <= MAX_TIMESTAMP:
            raise DifyError(400, BAD_REQUEST, f"{where}.value: {v!r} is not a timestamp from 1970 to 9999")
        return dt.datetime.fromtimestamp(v, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if not re.match(DATE_TEXT, str(v)):
        raise DifyError(400, BAD_REQUEST, f"{where}.value: {v!r} is not an ISO date (YYYY-MM-DD) or a Unix "
                                          "timestamp")
    return str(v)


def record(hit: dict, score: float, kb: str) -> dict:
    """One of Dify's records from a (redacted) public hit: ``metadata`` always an object."""
    meta = {"kb": kb, "doc_id": hit.get("doc_id"), "unit_id": hit.get("unit_id"), "source": hit.get("source"),
            "label": hit.get("label") or "", "page": hit.get("page"), "heading_path": hit.get("heading_path") or []}
    return {"content": hit.get("text", ""), "score": round(score, 6),
            "title": hit.get("title") or hit.get("source") or "", "metadata": meta}
