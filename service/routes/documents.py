"""Documents over HTTP: upload (a background ingest job), list, read, delete.

Rights: a reader lists and reads, an editor also uploads and deletes (``service/auth``). Every route
sees only the documents the caller's groups allow: a document outside them is "not found", exactly
like one that does not exist, so a key cannot probe for other groups' documents by id.
"""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from docqa.doc_meta import RESERVED, MetaError, clean_meta, meta_hash
from docqa.document import ocr_confidence
from docqa.kb import KnowledgeBase
from service.auth.access import Caller, CallerDep, EditorKB, ReaderKB
from service.compliance import redact_hits
from service.deps import RegistryDep, require_ready
from service.errors import ApiError
from service.schemas import error_responses
from service.uploads import UploadError, check_file, ingest_staged, stage, upload_doc_ids, uploads_dir

router = APIRouter(tags=["documents"])
KbName = Annotated[str, Path(max_length=64)]
DocId = Annotated[str, Path(max_length=512)]
GROUPS_DOC = "Comma-separated groups that may read these documents (default: every caller of the KB)."
META_DOC = "A JSON object of metadata (tags, date, version...) for these documents, to filter on."


def _visible(kb: KnowledgeBase, caller: Caller) -> list[dict]:
    allowed = kb.allowed(caller.filter())
    docs = kb.docs()
    return docs if allowed is None else [d for d in docs if d["doc_id"] in allowed.doc_ids]


def _public(d: dict) -> dict:
    meta = d.get("meta") or {}
    return {"doc_id": d["doc_id"], "title": d["title"], "name": FsPath(d["source"].split("#", 1)[0]).name,
            "record": d["source"].split("#", 1)[1] if "#" in d["source"] else None, "units": d.get("units"),
            "added_at": d.get("added_at"), "format": meta.get("format"), "pages": meta.get("pages"),
            "meta": {k: v for k, v in meta.items() if k not in RESERVED},
            "flagged": sorted({f.get("kind", "?") for f in meta.get("screen") or []})}


def _find(kb: KnowledgeBase, caller: Caller, doc_id: str) -> dict:
    for d in _visible(kb, caller):
        if d["doc_id"] == doc_id:
            return d
    raise ApiError(404, f"no document {doc_id!r} in knowledge base {kb.name!r}", "not_found")


@router.get("/v1/kbs/{kb}/documents", responses=error_responses(401, 403, 404, 422, 503))
def list_documents(base: ReaderKB, caller: CallerDep, offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   q: Annotated[str | None, Query(max_length=200, description="only documents whose file name or "
                                                  "title contains this (case-insensitive)")] = None):
    """The documents the caller may read, ordered by source, a page at a time."""
    docs = [_public(d) for d in _visible(base, caller)]
    if q and q.strip():
        needle = q.strip().casefold()
        docs = [d for d in docs if needle in d["name"].casefold() or needle in (d["title"] or "").casefold()]
    return {"kb": base.name, "total": len(docs), "offset": offset, "limit": limit,
            "documents": docs[offset: offset + limit]}


@router.get("/v1/kbs/{kb}/documents/{doc_id}", responses=error_responses(401, 403, 404, 503))
def get_document(base: ReaderKB, doc_id: DocId, caller: CallerDep):
    """One document's metadata and its parsed text (redacted as citations are)."""
    d = _find(base, caller, doc_id)
    doc = base.store.get_doc(doc_id)
    text = "\n".join(b.text for b in doc.blocks) if doc is not None else ""
    return {**_public(d), "text": redact_hits(base, [{"text": text}])[0]["text"]}


@router.get("/v1/kbs/{kb}/documents/{doc_id}/units", responses=error_responses(401, 403, 404, 422, 503))
def document_units(base: ReaderKB, doc_id: DocId, caller: CallerDep, offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=500)] = 100):
    """How a document was chunked: its units in order (article / segment / sentence level, pinpoint label, page,
    heading path, key info), redacted as citations are; the console's document page. ``ocr_confidence``: the
    lowest recognition confidence of the scanned paragraphs the unit was made from (null: not OCR);
    ``flags``: the kinds of the document's screening flags found in this unit's text."""
    d = _find(base, caller, doc_id)
    units = sorted(base.store.units_of_doc(doc_id), key=lambda u: (_LEVELS.get(str(u.level), 9), u.ord))
    doc = base.store.get_doc(doc_id)
    scanned = [b for b in (doc.blocks if doc is not None else []) if b.confidence is not None]  # OCR's
    flags = [f for f in (d.get("meta") or {}).get("screen") or [] if f.get("match")]
    page = [{"unit_id": u.unit_id, "level": str(u.level), "ord": u.ord, "label": u.label, "page": u.page,
             "heading_path": u.heading_path, "keyinfo": u.keyinfo, "text": u.text,
             "ocr_confidence": ocr_confidence(u.text, u.page, scanned),
             "flags": sorted({f.get("kind", "?") for f in flags if f["match"] in u.text})}
            for u in units[offset: offset + limit]]
    return {"kb": base.name, "doc_id": doc_id, "total": len(units), "offset": offset, "limit": limit,
            "units": redact_hits(base, page)}


_LEVELS = {"article": 0, "segment": 1, "sentence": 2}


@router.delete("/v1/kbs/{kb}/documents/{doc_id}", responses=error_responses(401, 403, 404, 409, 503))
def delete_document(base: EditorKB, doc_id: DocId, registry: RegistryDep, caller: CallerDep):
    """Delete a document (editor role): one commit; 409 while another writer holds the KB."""
    from ingest.pipeline import delete_documents

    d = _find(base, caller, doc_id)
    why = caller.may_write((d.get("meta") or {}).get("groups"))
    if why:
        raise ApiError(403, f"this API key may not delete document {doc_id!r}: {why}", "permission_denied")
    deleted, _ = delete_documents(base.name, [doc_id], registry.settings)
    source = FsPath(d["source"].split("#", 1)[0])
    if deleted and source.parent == uploads_dir(registry.settings, base.name).resolve() and "#" not in d["source"]:
        source.unlink(missing_ok=True)  # an uploaded file goes with its document
    return {"kb": base.name, "deleted": deleted}


@router.post("/v1/kbs/{kb}/documents", status_code=202,
             responses={200: {"description": "Every file is already in the KB with the same content and metadata: "
                                             "nothing to do (no job)."},
                        **error_responses(401, 403, 404, 413, 415, 422, 503)})
def upload_documents(base: EditorKB, request: Request, registry: RegistryDep, caller: CallerDep,
                     files: Annotated[list[UploadFile], File(description="One or more documents.")],
                     groups: Annotated[str | None, Form(description=GROUPS_DOC)] = None,
                     meta: Annotated[str | None, Form(description=META_DOC)] = None):
    """Upload documents (editor role); they are ingested by a background job: poll ``GET /v1/jobs/{id}``.

    Checked first, all or nothing: names made safe, type by content, size per file; a file identical
    (content and metadata) to a document the caller can already read is not ingested again."""
    require_ready(registry)
    settings = registry.settings
    run_meta = _upload_meta(groups, meta, caller)
    if len(files) > settings.max_upload_files:
        raise ApiError(422, f"{len(files)} files in one upload, over the limit of {settings.max_upload_files}")
    checked: dict[str, bytes] = {}
    try:
        for f in files:
            data = f.file.read(int(settings.max_file_mb * 2**20) + 1)
            name = check_file(f.filename, data, settings)
            if name in checked:
                raise UploadError(422, f"{name}: two files of this upload have the same name")
            checked[name] = data
    except UploadError as e:
        raise ApiError(e.status, str(e), "unsupported_media_type" if e.status == 415 else "invalid_request_error") \
            from None
    ids = upload_doc_ids(settings, base.name, list(checked))
    for name, doc_id in ids.items():  # uploading a name again replaces that document: the caller must own it
        exists, groups = base.store.doc_groups(doc_id)
        why = caller.may_write(groups) if exists else None
        if why:
            raise ApiError(403, f"{name}: a document of this name exists and this API key may not replace it: {why}",
                           "permission_denied")
    new, dup = _not_duplicates(base, caller, checked, run_meta, ids)
    dups = [{"name": n, "status": "duplicate", "doc_id": d} for n, d in dup.items()]
    if not new:
        return JSONResponse({"kb": base.name, "job_id": None, "status": "unchanged", "documents": dups})
    staged = stage(settings, base.name, list(new.items()))
    job = request.app.state.jobs.submit("ingest", base.name, staged.folder,
                                        lambda job: ingest_staged(settings, staged, run_meta, job,
                                                                  writable=caller.writable_groups),
                                        total=len(new), owner=caller.key_id)
    return JSONResponse({"kb": base.name, "job_id": job.id, "status": job.status, "url": f"/v1/jobs/{job.id}",
                         "documents": [{"name": n, "doc_id": ids[n], "status": "queued"} for n in new] + dups},
                        status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _upload_meta(groups: str | None, meta: str | None, caller: Caller) -> dict:
    try:
        out = json.loads(meta) if meta else {}
        if not isinstance(out, dict):
            raise ApiError(422, "meta must be a JSON object")
        if groups is not None:
            out["groups"] = groups
        out = clean_meta(out, "upload")
    except (json.JSONDecodeError, RecursionError) as e:
        raise ApiError(422, f"meta is not valid JSON ({e})") from None
    except MetaError as e:
        raise ApiError(422, str(e)) from None
    writable = caller.writable_groups
    if writable and not out.get("groups"):
        out["groups"] = sorted(writable)  # a group-restricted editor files into its own groups by default
    why = caller.may_write(out.get("groups"))
    if why:  # an editor may not plant a document in another group, nor publish one to the whole KB
        raise ApiError(403, f"these documents may not be filed so: {why}", "permission_denied")
    return out


def _not_duplicates(kb: KnowledgeBase, caller: Caller, files: dict[str, bytes], meta: dict,
                    ids: dict[str, str]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Split the files into those to ingest and duplicates (name -> the doc_id it duplicates): a file
    whose bytes a document the caller can read already has is not ingested again, unless it is that
    same document (same name) with new metadata, which re-files it."""
    import hashlib

    from docqa.doc_meta import apply_meta

    want = meta_hash(apply_meta({}, meta))
    by_hash: dict[str, dict] = {}
    for d in _visible(kb, caller):
        by_hash.setdefault(d.get("content_hash"), d)
    new, dup = {}, {}
    for name, data in files.items():
        d = by_hash.get(hashlib.sha256(data).hexdigest())
        if d is None or (d["doc_id"] == ids[name] and (d.get("meta") or {}).get("meta_hash") != want):
            new[name] = data
        else:
            dup[name] = d["doc_id"]
    return new, dup
