"""Document metadata a user supplies: groups (who may read it) and any fields to filter on.

Sources, strongest first: the document's own (a JSONL record's keys), a sidecar file beside the
document (``report.pdf.meta.json``, or ``report.meta.json``), and the defaults of the run
(``docqa ingest --groups``, an upload's form fields). A sidecar is a JSON object::

    {"groups": ["hr", "legal"], "tags": ["leave"], "date": "2023-06-01", "version": "3"}

Changing only the metadata (a sidecar edited, a record's groups changed) re-ingests that document:
``meta_hash`` is part of what "unchanged" means, so access rules never lag behind the files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from docqa.errors import UserError
from docqa.filters import FilterError, normalize_groups

SIDECAR_SUFFIX = ".meta.json"
MAX_SIDECAR_BYTES = 64 * 1024
# keys the loaders and the pipeline set: a sidecar may not override them, and they are not part of
# ``meta_hash`` (they vary without the document changing, e.g. a JSONL record moving down a line)
RESERVED = frozenset({"format", "path", "line", "pages", "screen", "meta_hash", "upload"})


class MetaError(UserError):
    """Unusable metadata; the message names the file (and field)."""


def sidecar_of(path: Path) -> Path | None:
    for cand in (path.with_name(path.name + SIDECAR_SUFFIX), path.with_name(path.stem + SIDECAR_SUFFIX)):
        if cand != path and cand.is_file():
            return cand
    return None


def read_sidecar(path: Path) -> dict:
    """The metadata of the sidecar beside ``path`` ({} without one). MetaError names what is wrong."""
    side = sidecar_of(path)
    if side is None:
        return {}
    try:
        if side.stat().st_size > MAX_SIDECAR_BYTES:
            raise MetaError(f"metadata file {side.name} is over {MAX_SIDECAR_BYTES // 1024} KB")
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MetaError(f"metadata file {side.name} is not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise MetaError(f"metadata file {side.name} must hold a JSON object")
    return clean_meta(data, f"metadata file {side.name}")


def clean_meta(meta: dict, where: str) -> dict:
    """User metadata checked: reserved keys refused, ``groups`` normalised (see ``normalize_groups``)."""
    bad = sorted(set(meta) & RESERVED)
    if bad:
        raise MetaError(f"{where}: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} set by docqa, not by metadata")
    out = dict(meta)
    if "groups" in out:
        try:
            out["groups"] = normalize_groups(out["groups"], where)
        except FilterError as e:
            raise MetaError(str(e)) from None
    return out


def outside_groups(groups, writable: frozenset[str] | None) -> str | None:
    """Why a writer that may file documents only in ``writable`` (None: anywhere) may not file, replace or
    delete a document readable by ``groups`` (None or empty: every caller of the KB); None when it may.

    The rule (README, "Security model"): a writer keeps documents inside what it reads. A key with groups
    files documents only in those groups; a document with no groups is KB-wide, readable by every key of the
    KB, so a key with groups may not publish, replace or delete one. A key without groups reads only KB-wide
    documents and writes only those. Unrestricted writers (an admin, a key whose groups are '*', the local
    CLI) may do either."""
    if writable is None:
        return None
    mine = ", ".join(sorted(writable))
    if not groups:
        if not writable:  # a key without groups: the KB-wide documents are its own
            return None
        return ("a document without groups is readable by every caller of the knowledge base; this API key may "
                f"only file documents in its groups ({mine})")
    if not writable:
        return f"this API key has no groups: it may only file documents without groups (not {', '.join(groups)})"
    other = sorted(set(groups) - writable)
    if other:
        return f"groups {', '.join(other)} are not among this API key's groups ({mine})"
    return None


def apply_meta(doc_meta: dict, overlay: dict) -> dict:
    """A document's metadata with ``overlay`` (sidecar over run defaults) under its own keys, stamped
    with ``meta_hash``."""
    merged = {**{k: v for k, v in overlay.items() if k not in RESERVED}, **doc_meta}
    if "groups" in merged:
        merged["groups"] = normalize_groups(merged["groups"], "groups")
    merged["meta_hash"] = meta_hash(merged)
    return merged


def meta_hash(meta: dict) -> str:
    """A hash of the user-supplied part of ``meta`` (what a metadata-only change alters)."""
    user = {k: v for k, v in meta.items() if k not in RESERVED}
    return hashlib.sha256(json.dumps(user, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


EMPTY_HASH = meta_hash({})
