"""`POST /v1/jobs`: a multipart upload (video, optional danmaku) or a JSON path under the allowed folder -> a queued
job. The body is refused as early as it can be: a full queue before a byte is read, an upload over the cap while
it streams, a file that is not media before it is queued."""

from __future__ import annotations

import json

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser

from tam.serve.jobs import Job
from tam.serve.media import Refused, capped, probe, read_comments, save_upload, under
from tam.serve.service import Service

JSON_LIMIT = 64 * 1024
FIELDS = {"video", "danmaku"}


async def receive(request: Request, svc: Service) -> Job:
    """The new job, recorded and queued (Refused otherwise, with nothing left behind)."""
    if svc.runner.full():
        raise Refused(429, "the job queue is full; try again later")
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > svc.options.max_upload_bytes + JSON_LIMIT:
        raise Refused(413, f"the upload is over the {svc.options.max_upload_mb:g} MB limit (--max-upload-mb)")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        job = await _upload(request, svc)
    elif kind == "application/json":
        job = await run_in_threadpool(_server_path, await _json(request), svc)
    else:
        raise Refused(415, "send multipart/form-data (video, optional danmaku) or application/json ({\"path\": ...})")
    svc.submit(job)
    return job


async def _upload(request: Request, svc: Service) -> Job:
    stream = capped(request.stream(), svc.options.max_upload_bytes)
    try:
        form = await MultiPartParser(request.headers, stream, max_files=2, max_fields=2).parse()
    except MultiPartException as e:
        raise Refused(400, f"bad multipart body: {e.message}") from None
    try:
        unknown = set(form) - FIELDS
        if unknown or not hasattr(form.get("video"), "filename"):
            raise Refused(422, "send the video file in the form field `video` (and optionally `danmaku`); "
                               f"unknown fields: {sorted(unknown)}")
        job = svc.store.new()
        try:
            await run_in_threadpool(_keep, form, job, svc)
        except BaseException:
            svc.store.discard(job)
            raise
        return job
    finally:
        await form.close()


def _keep(form, job: Job, svc: Service) -> None:
    """Save the upload(s) into the job's folder and check them (415 for a non-video or unreadable danmaku)."""
    folder = svc.store.folder(job.id)
    path = save_upload(form["video"], folder / "input", "video.mp4")
    job.name, job.source = path.name, str(path)
    job.expected_segments = probe(path, job.name, svc.needs_video(), svc.segment_seconds())
    if hasattr(form.get("danmaku"), "filename"):
        dm = save_upload(form["danmaku"], folder / "danmaku", "danmaku.xml")
        read_comments(dm, dm.name)
        job.danmaku = str(dm)


async def _json(request: Request) -> dict:
    body = b""
    async for chunk in capped(request.stream(), JSON_LIMIT):
        body += chunk
    try:
        data = json.loads(body)
    except ValueError as e:
        raise Refused(400, f"the body is not JSON ({e})") from None
    if not isinstance(data, dict) or set(data) - {"path", "features", "video"} or not (
            isinstance(data.get("path"), str) or isinstance(data.get("features"), str)
            and isinstance(data.get("video"), str)):
        raise Refused(422, "send {\"path\": FILE} or {\"features\": STORE, \"video\": ID} (paths under the allowed "
                           "folder)")
    return data


def _server_path(data: dict, svc: Service) -> Job:
    """A job on a file (or a feature store's video) under the operator's --allow-folder."""
    folder = svc.options.allow_folder
    if "path" in data:
        path = under(folder, data["path"])
        if not path.is_file():
            raise Refused(422, f"{data['path']}: not a file")
        expected = probe(path, data["path"], svc.needs_video(), svc.segment_seconds())
        job = svc.store.new(name=data["path"], source=str(path), expected_segments=expected)
    else:
        store = under(folder, data["features"])
        if not (store / "manifest.json").is_file():
            raise Refused(422, f"{data['features']}: not a feature store (no manifest.json)")
        job = svc.store.new(name=f"{data['features']}:{data['video']}", source=data["video"], features=str(store))
    return job
