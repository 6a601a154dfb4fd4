"""``POST /v1/kbs/{kb}/eval`` (an eval run as a background job), ``GET /v1/jobs/{id}`` and its files.

Evals need the admin role (service/auth); a job is visible to admins and to the key that submitted it
(upload jobs: ``routes/documents.py``). In loopback-only mode every local caller is an admin.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, StrictFloat

from service.auth.access import AdminKB, CallerDep, Role
from service.deps import RegistryDep, require_ready
from service.errors import ApiError
from service.schemas import error_responses

router = APIRouter(tags=["jobs"])
_FILE = re.compile(r"^[A-Za-z0-9_.-]{1,100}\.(?:md|json|jsonl|png)$")
MAX_ROWS = 5000


class EvalJobRequest(BaseModel):
    rows: list[dict] = Field(min_length=1, max_length=MAX_ROWS,
                             description="Eval set rows, as in a JSONL eval set (see `docqa eval run`).")
    baseline: dict | None = Field(default=None, description="metrics.json of an earlier run: regressions listed.")
    tolerance: StrictFloat = Field(default=0.01, ge=0, le=1)
    set: str | None = Field(default=None, description="A sweep, KEY=V1,V2,... (one numeric setting).")


def _runner(request: Request):
    return request.app.state.jobs


@router.post("/v1/kbs/{kb}/eval", status_code=202, responses=error_responses(401, 403, 404, 413, 422, 503))
def start_eval(base: AdminKB, req: EvalJobRequest, registry: RegistryDep, request: Request, caller: CallerDep):
    """Start ``docqa eval run`` on the KB as a job (admin role); poll ``GET /v1/jobs/{id}``."""
    from service.evaluation.dataset import EvalSet, parse_row
    from service.evaluation.runner import evaluate, parse_sweep

    require_ready(registry)
    rows, skipped = [], []
    for i, obj in enumerate(req.rows, start=1):
        try:
            rows.append(parse_row(obj, i))
        except ValueError as e:
            skipped.append((i, str(e)))
    if not rows:
        first = f"row {skipped[0][0]}: {skipped[0][1]}"
        raise ApiError(422, f"no usable rows: {len(skipped)} malformed, the first: {first}")
    try:
        sweep = parse_sweep(req.set)
    except ValueError as e:
        raise ApiError(422, str(e)) from None
    evalset = EvalSet(rows, skipped, "request")
    folder = registry.settings.home / base.name / "evals"

    def work(job):
        out = folder / job.id
        result = evaluate(base, evalset, out, baseline=req.baseline, tolerance=req.tolerance, sweep=sweep,
                          progress=False, on_row=job.progress, run_id=f"job:{job.id}", groups=caller.groups)
        return {"metrics": result["metrics"], "regressions": result["regressions"], "notes": result["notes"],
                "files": {p.name: f"/v1/jobs/{job.id}/files/{p.name}" for p in sorted(out.iterdir())
                          if _FILE.match(p.name)}}

    job = _runner(request).submit("eval", base.name, folder, work, total=len(rows), owner=caller.key_id)
    return JSONResponse({"job_id": job.id, "status": job.status, "url": f"/v1/jobs/{job.id}",
                         "rows": len(rows), "skipped": [{"row": n, "why": w} for n, w in skipped]}, status_code=202)


@router.get("/v1/jobs", responses=error_responses(401, 422))
def list_jobs(request: Request, caller: CallerDep,
              kind: Annotated[Literal["eval", "ingest"] | None, Query(description="eval, or ingest (uploads)")] = None,
              kb: Annotated[str | None, Query(max_length=64)] = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 50):
    """The jobs this key may see, newest first (an admin: every job of its KBs; another key: its own), e.g. an
    eval's runs to compare."""
    jobs = [j for j in _runner(request).list(kind, kb) if _visible(caller, j)]
    return {"jobs": [j.public() for j in jobs[:limit]]}


@router.get("/v1/jobs/{job_id}", responses=error_responses(401, 403, 404))
def job_status(job_id: Annotated[str, Path(max_length=64)], request: Request, caller: CallerDep):
    """A job's status and progress; when done, its result (an eval's metrics and report files, an
    upload's documents). An admin sees every job, another key the jobs it submitted."""
    return _job_for(request, caller, job_id).public()


def _visible(caller, job) -> bool:
    return (caller.role >= Role.ADMIN or (job.owner is not None and job.owner == caller.key_id)) \
        and caller.may_see(job.kb)


def _job_for(request: Request, caller, job_id: str):
    job = _runner(request).get(job_id)
    if job is None or not _visible(caller, job):
        raise ApiError(404, f"no job {job_id!r}", "not_found")
    return job


@router.get("/v1/jobs/{job_id}/files/{name}", responses=error_responses(401, 403, 404))
def job_file(job_id: Annotated[str, Path(max_length=64)], name: Annotated[str, Path(max_length=120)],
             request: Request, caller: CallerDep):
    """One file of a finished job (report.md, metrics.json, rows.jsonl, the plots)."""
    job = _job_for(request, caller, job_id)
    path = job.folder / job.id / name if job is not None and _FILE.match(name) else None
    if path is None or not path.is_file():
        raise ApiError(404, f"no file {name!r} for job {job_id!r}", "not_found")
    return FileResponse(path)
