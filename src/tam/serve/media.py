"""What comes in: file names made safe, uploads streamed to disk under a size cap, media probed before queueing,
danmaku read, server paths confined to the operator's folder. Each refusal is a `Refused(status, one line)`."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from tam.errors import TamError


class Refused(Exception):
    """An input the service will not take: the HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def safe_name(name: str | None, default: str) -> str:
    """The last path component of a client's file name, in [A-Za-z0-9._-] (at most 100 characters), never hidden
    and never `.`/`..`: a name can place nothing outside its job's folder."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[-100:]
    return base or default


async def capped(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The request body, refused with 413 as soon as more than `limit` bytes have come."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise Refused(413, f"the upload is over the {limit / 2**20:g} MB limit (--max-upload-mb)")
        yield chunk


def save_upload(upload, folder: Path, default: str) -> Path:
    """Move a parsed upload (a spooled file) into `folder` under its safe name; returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_name(upload.filename, default)
    with path.open("wb") as out:
        upload.file.seek(0)
        shutil.copyfileobj(upload.file, out, 1 << 20)
    return path


def probe(path: Path, name: str, need_video: bool, segment_s: float) -> int:
    """Open `path` as media (415 with the reason otherwise); the number of segments it should give."""
    from tam.encoders.video_io import open_media, pick_audio_stream, pick_video_stream

    try:
        with open_media(path) as container:
            video, audio = pick_video_stream(container), pick_audio_stream(container)
            seconds, kind = (container.duration or 0) / 1e6, container.format.name
    except TamError as e:
        raise Refused(415, str(e).replace(str(path), name)) from None
    if kind == "image2" or kind.endswith("_pipe"):  # PNG, JPEG, BMP, ...: FFmpeg reads them as one-frame videos
        raise Refused(415, f"{name}: an image ({kind}), not a video")
    if need_video and video is None:
        raise Refused(415, f"{name}: no video stream (the model needs video)")
    if video is None and audio is None:
        raise Refused(415, f"{name}: no video or audio stream")
    return max(1, round(seconds / segment_s))


def read_comments(path: Path, name: str) -> list[float]:
    """The times (s) of the danmaku in `path`, any format `tam comments` reads (415 with the reason otherwise)."""
    from tam.comments.formats import read_danmaku

    try:
        found = read_danmaku(path)
    except TamError as e:
        raise Refused(415, str(e).replace(str(path), name)) from None
    if not found:
        raise Refused(415, f"{name}: not a danmaku file of a known format (Bilibili XML/protobuf, AcFun, niconico, "
                           "CommentCoreLibrary JSON, CSV, JSONL)")
    return sorted(c.time for v in found for c in v.comments)


def under(folder: str, given: str) -> Path:
    """`given` (relative to `folder`, or absolute) resolved with its links; 403 unless it stays inside `folder`."""
    if not folder:
        raise Refused(403, "server paths are off: start the server with --allow-folder DIR")
    base = Path(folder).resolve()
    try:
        path = (base / given).resolve()
    except (ValueError, OSError) as e:
        raise Refused(422, f"{given!r}: not a usable path ({e})") from None
    if not path.is_relative_to(base):
        raise Refused(403, f"{given}: outside the folder the server allows")
    if not path.exists():
        raise Refused(404, f"{given}: no such file under the allowed folder")
    return path
