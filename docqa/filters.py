"""Which documents a query may see: the caller's groups and metadata conditions, applied INSIDE retrieval.

A ``DocFilter`` is resolved once per KB view (and cached) to the set of documents and units that pass;
``docqa/search.py`` then hands that set to FAISS (an ID selector: the dense top-k is taken among the
allowed units only) and to the keyword engine (a term-set clause on ``doc_id``), before fusion. So a
forbidden document never takes a candidate slot, never shifts a rank, and never reaches evidence,
prompt, citations or the audit log: it is not filtered out of the results, it is never in them.

Groups (document-level access): a document whose ``meta["groups"]`` is empty is visible to every caller
of its KB; one with groups only to callers holding at least one of them. ``groups=None`` (loopback mode,
or a key with the ``*`` group) sees everything.

Metadata conditions (``parse_where``), on ``title``, ``source``, ``doc_id`` or any ``meta`` key::

    {"department": "hr"}                          equality (for a list value: the list contains it)
    {"tags": {"in": ["leave", "pay"]}}            set membership (any of)
    {"date": {"gte": "2020-01-01", "lt": "2024"}} range; ISO dates compare as text, numbers as numbers

A condition only narrows: ``{"groups": "hr"}`` keeps the hr documents among those the key already sees
(it never widens the key's groups, so it tells a caller nothing about documents it may not see).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docqa.errors import UserError

RANGE_OPS = ("gt", "gte", "lt", "lte")
MAX_CONDITIONS = 16
MAX_VALUES = 256


class FilterError(UserError):
    """A filter a client sent that cannot be applied; the message names the field and why (HTTP 422)."""


# what a condition can test; parse_where's JSON language offers eq, in and range, the integrations
# (service/integrations/dify.py: Dify's metadata_condition) the rest
OPS = ("eq", "in", "range", "ne", "nin", "contains", "not_contains", "prefix", "suffix", "empty", "not_empty")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # one of OPS
    values: tuple = ()  # eq, ne, contains, not_contains, prefix, suffix: (value,); in, nin: the set
    bounds: tuple = ()  # range: ((op, value), ...)
    also: tuple[str, ...] = ()  # more fields: the condition holds when it holds for any of them

    def test(self, doc: dict) -> bool:
        return any(self._test(_values_of(doc, f)) for f in (self.field, *self.also))

    def _test(self, have: list) -> bool:
        op = self.op
        if op == "eq":
            return self.values[0] in have
        if op == "in":
            return any(v in have for v in self.values)
        if op == "range":
            return any(all(_compare(v, o, b) for o, b in self.bounds) for v in have)
        if op == "ne":
            return self.values[0] not in have
        if op == "nin":
            return not any(v in have for v in self.values)
        if op == "empty":
            return not any(v not in ("", None) for v in have)
        if op == "not_empty":
            return any(v not in ("", None) for v in have)
        texts = [v for v in have if isinstance(v, str)]
        want = str(self.values[0])
        if op in ("contains", "not_contains"):
            # a list value (tags) contains an element equal to it; a text value contains it as a substring
            found = self.values[0] in have or any(want in t for t in texts)
            return found if op == "contains" else not found
        if op == "prefix":
            return any(t.startswith(want) for t in texts)
        if op == "suffix":
            return any(t.endswith(want) for t in texts)
        raise FilterError(f"filter {self.field!r}: unknown operator {op!r}")


@dataclass(frozen=True)
class DocFilter:
    groups: frozenset[str] | None = None  # None: no group restriction
    where: tuple[Condition, ...] = ()
    any_of: bool = False  # the conditions are joined by "or" (Dify's logical_operator), not "and"

    @property
    def is_open(self) -> bool:
        return self.groups is None and not self.where

    def allows(self, doc: dict) -> bool:
        """``doc``: {"doc_id", "title", "source", "meta"} as ``UnitStore.doc_table`` gives it."""
        if self.groups is not None:
            own = _groups_of(doc.get("meta") or {})
            if own and not (own & self.groups):
                return False
        if not self.where:
            return True
        return (any if self.any_of else all)(c.test(doc) for c in self.where)


OPEN = DocFilter()


def doc_filter(groups, where: dict | None = None) -> DocFilter:
    """A filter for a caller's ``groups`` (None or containing ``*``: all) and a client's ``where``."""
    g = None if groups is None or "*" in groups else frozenset(groups)
    return DocFilter(g, parse_where(where))


def parse_where(where: dict | None) -> tuple[Condition, ...]:
    if where is None:
        return ()
    if not isinstance(where, dict):
        raise FilterError('filters must be an object of {field: value | {"in": [...]} | {"gte": ..., "lte": ...}}')
    if len(where) > MAX_CONDITIONS:
        raise FilterError(f"filters name {len(where)} fields, over the limit of {MAX_CONDITIONS}")
    out = []
    for name, spec in sorted(where.items()):
        if not isinstance(name, str) or not name or len(name) > 64:
            raise FilterError(f"filter field {name!r} is not a field name (1-64 characters)")
        if isinstance(spec, dict):
            out.append(_operator_condition(name, spec))
        else:
            out.append(Condition(name, "eq", (_scalar(name, spec),)))
    return tuple(out)


def json_schema() -> dict:
    """The JSON Schema of a ``filters`` object: exactly what ``parse_where`` accepts, so an API schema
    built from it promises no more and no less than the server does."""
    scalar = {"type": ["string", "number", "boolean"]}
    field = {"type": "string", "minLength": 1, "maxLength": 64}

    value = {"anyOf": [
        scalar,
        {"type": "object", "required": ["in"], "additionalProperties": False,
         "properties": {"in": {"type": "array", "items": scalar, "minItems": 1, "maxItems": MAX_VALUES}}},
        {"type": "object", "minProperties": 1, "additionalProperties": False,
         "properties": {op: {"type": ["string", "number"]} for op in RANGE_OPS}}]}
    return {"type": "object", "maxProperties": MAX_CONDITIONS, "propertyNames": field,
            "additionalProperties": value}


def _operator_condition(name: str, spec: dict) -> Condition:
    ops = set(spec)
    if ops == {"in"}:
        vals = spec["in"]
        if not isinstance(vals, list) or not vals:
            raise FilterError(f"filter {name!r}: 'in' needs a non-empty list")
        if len(vals) > MAX_VALUES:
            raise FilterError(f"filter {name!r}: 'in' has {len(vals)} values, over the limit of {MAX_VALUES}")
        return Condition(name, "in", tuple(_scalar(name, v) for v in vals))
    if ops and ops <= set(RANGE_OPS):
        # text bounds compare with text values, numbers with numbers: mixed bounds, like an empty range,
        # are a valid filter that nothing passes
        bounds = tuple((op, _scalar(name, spec[op], allow_bool=False)) for op in RANGE_OPS if op in spec)
        return Condition(name, "range", bounds=bounds)
    raise FilterError(f"filter {name!r}: unknown operator(s) {sorted(ops)}; use 'in', or 'gt', 'gte', 'lt', 'lte'")


def _scalar(name: str, v: Any, allow_bool: bool = True):
    if isinstance(v, bool) and not allow_bool:
        raise FilterError(f"filter {name!r}: a range bound must be a date, text or a number, not {v!r}")
    if isinstance(v, (str, int, float)) and not (isinstance(v, float) and v != v):
        return v
    raise FilterError(f"filter {name!r}: {v!r} is not a string, number or boolean")


def _values_of(doc: dict, field: str) -> list:
    if field in ("title", "source", "doc_id"):
        v = doc.get(field)
    else:
        v = (doc.get("meta") or {}).get(field)
    if v is None:
        return []
    return [x for x in v if not isinstance(x, (dict, list))] if isinstance(v, list) else [v]


def _compare(v, op: str, bound) -> bool:
    if isinstance(bound, str) != isinstance(v, str) or isinstance(v, bool):
        return False  # a date range never matches a number, and the other way round
    if op == "gt":
        return v > bound
    if op == "gte":
        return v >= bound
    if op == "lt":
        return v < bound
    return v <= bound


def _groups_of(meta: dict) -> frozenset[str]:
    g = meta.get("groups") or ()
    return frozenset(g) if isinstance(g, (list, tuple)) else frozenset([str(g)])


def normalize_groups(value, where: str) -> list[str]:
    """Groups as a document carries them: a sorted list of distinct non-empty names. ``value``: a list
    or a comma-separated string (sidecar, JSONL record, upload field, ``--groups``); ``where`` names the
    source for the error message."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(g, str) for g in value):
        raise FilterError(f"{where}: 'groups' must be a list of names or a comma-separated string")
    names = sorted({g.strip() for g in value if g.strip()})
    bad = [g for g in names if g == "*" or len(g) > 64]
    if bad:
        raise FilterError(f"{where}: {bad[0]!r} is not a group name ('*' is reserved; at most 64 characters)")
    return names
