"""/v1/jobs: submit a video, follow its job, fetch its result and its report."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from tam.serve.deps import ServiceDep, authorised, errors
from tam.serve.intake import receive
from tam.serve.jobs import FINISHED, JOB_ID, STATES, Job
from tam.serve.service import Service

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(authorised)],
                   responses=errors(401, 403))
JobId = Annotated[str, Path(pattern=JOB_ID, description="the id `POST /v1/jobs` returned")]

UPLOAD = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["video"], "properties": {
        "video": {"type": "string", "format": "binary", "description": "the video file"},
        "danmaku": {"type": "string", "format": "binary",
                    "description": "its time-sync comments (any format `tam comments` reads)"}}}},
    "application/json": {"schema": {"type": "object", "additionalProperties": False, "properties": {
        "path": {"type": "string", "description": "a video under the server's --allow-folder"},
        "features": {"type": "string", "description": "a feature store under --allow-folder (with video)"},
        "video": {"type": "string", "description": "a video id in that store"}}}}}}}


class Links(BaseModel):
    self: str
    result: str
    report: str


class JobView(BaseModel):
    """A job's state; `progress` is 0..1, times are Unix seconds (0: not yet)."""

    id: str
    state: Literal[STATES]
    progress: float
    name: str
    created: float
    started: float
    finished: float
    error: str
    links: Links


@router.post("", status_code=202, response_model=JobView, openapi_extra=UPLOAD,
             responses=errors(400, 404, 413, 415, 422, 429, 503),
             summary="Submit a video (upload, or a path under the allowed folder); returns its job at once")
async def submit(request: Request, svc: ServiceDep) -> JSONResponse:
    job = await receive(request, svc)
    return JSONResponse(job.public(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


def _job(job_id: str, svc: Service) -> Job:
    job = svc.store.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id} (never made, or expired)")
    return job


@router.get("/{job_id}", response_model=JobView, responses=errors(404, 422), summary="A job's state and progress")
async def status(job_id: JobId, svc: ServiceDep,
                 wait: Annotated[float, Query(ge=0, le=60, description="answer once the job is finished, or after "
                                                                        "this many seconds (long polling)")] = 0):
    job = _job(job_id, svc)
    end = time.monotonic() + wait
    while job.state not in FINISHED and time.monotonic() < end:
        await asyncio.sleep(0.02)
    return job.public()


def _finished(job_id: str, svc: Service) -> Job:
    job = _job(job_id, svc)
    if not (svc.store.folder(job.id) / "result.json").is_file():
        raise HTTPException(409, f"job {job.id} is {job.state}; it has no result"
                                 + (f": {job.error}" if job.error else ""))
    return job


@router.get("/{job_id}/result", response_model=dict[str, Any], responses=errors(404, 409, 422),
            summary="The prediction: the same JSON object as one line of `tam predict`'s predictions.jsonl")
def result(job_id: JobId, svc: ServiceDep) -> FileResponse:
    job = _finished(job_id, svc)
    return FileResponse(svc.store.folder(job.id) / "result.json", media_type="application/json")


@router.get("/{job_id}/report", response_class=FileResponse, responses=errors(404, 409, 422),
            summary="The video's HTML report page (plot, segment strip, frames, words)")
def report(job_id: JobId, svc: ServiceDep) -> FileResponse:
    job = _finished(job_id, svc)
    if job.state != "done":
        raise HTTPException(409, f"job {job.id} failed; it has no report: {job.error}")
    return FileResponse(svc.report(job), media_type="text/html")
