"""Jobs: one record per job in a state folder, a bounded queue, a pool of worker threads, restart recovery, expiry.

    STATE/jobs/<id>/job.json        the record (state, progress, times, error), rewritten atomically
    STATE/jobs/<id>/input/<name>    the uploaded video (server-path jobs have none)
    STATE/jobs/<id>/danmaku/<name>  its danmaku file, when one came
    STATE/jobs/<id>/result.json     the prediction: one line of `tam predict`'s predictions.jsonl
    STATE/jobs/<id>/report.html     the video's HTML report page (tam.infer.report), made on first request

States: queued -> running -> done | failed. A record found queued or running when the server starts was cut off
by a stop (or kill -9): it is marked `interrupted` and never re-run (submit it again). Results are written
before the record says done, so a finished job is always served whole after a restart.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tam.io import write_json

STATES = ("queued", "running", "done", "failed", "interrupted")
FINISHED = frozenset({"done", "failed", "interrupted"})
JOB_ID = r"^[0-9a-f]{32}$"
log = logging.getLogger("tam.serve")


@dataclass
class Job:
    """One job's record, as stored in job.json (`public()` is what the API shows)."""

    id: str
    state: str = "queued"
    progress: float = 0.0  # 0..1: segments encoded over the segments the probe expects
    name: str = ""  # the upload's file name, or the path under the allowed folder
    source: str = ""  # the file predicted (server path; never shown)
    features: str = ""  # a feature store on the server: `source` is then a video id in it
    danmaku: str = ""  # the danmaku file (server path; never shown)
    expected_segments: int = 0
    created: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    error: str = ""

    def public(self) -> dict:
        keep = ("id", "state", "progress", "name", "created", "started", "finished", "error")
        out = {k: getattr(self, k) for k in keep}
        out["progress"] = round(self.progress, 3)
        base = f"/v1/jobs/{self.id}"
        out["links"] = {"self": base, "result": f"{base}/result", "report": f"{base}/report"}
        return out


class JobStore:
    """The job records of a state folder, kept in memory and on disk (every change written atomically)."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def folder(self, job_id: str) -> Path:
        if not re.match(JOB_ID, job_id):  # ids are ours: nothing else ever reaches the file system
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id

    def new(self, **kw) -> Job:
        """A fresh job and its folder (not saved: `add` it once its input is checked)."""
        job = Job(id=uuid.uuid4().hex, created=time.time(), **kw)
        self.folder(job.id).mkdir()
        return job

    def add(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
        self.save(job)

    def save(self, job: Job) -> None:
        write_json(self.folder(job.id) / "job.json", asdict(job))

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id) if re.match(JOB_ID, job_id) else None

    def discard(self, job: Job) -> None:
        """Delete a job and everything in its folder."""
        with self._lock:
            self._jobs.pop(job.id, None)
        shutil.rmtree(self.folder(job.id), ignore_errors=True)

    def counts(self) -> dict[str, int]:
        c = Counter(j.state for j in list(self._jobs.values()))
        return {s: c.get(s, 0) for s in STATES}

    def recover(self) -> list[str]:
        """Load every record; the ones a stop cut off become `interrupted`; folders without a record (an upload
        cut off) are removed. Returns the interrupted ids."""
        names = {f.name for f in fields(Job)}
        cut = []
        for folder in sorted(self.root.iterdir()):
            try:
                job = Job(**{k: v for k, v in json.loads((folder / "job.json").read_text()).items() if k in names})
            except (OSError, ValueError, TypeError):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if job.state not in FINISHED:
                job.error = f"the server stopped while this job was {job.state}; submit it again"
                job.state, job.finished = "interrupted", time.time()
                self.save(job)
                cut.append(job.id)
            self._jobs[job.id] = job
        return cut

    def expire(self, max_age_s: float) -> int:
        """Delete finished jobs that finished more than `max_age_s` seconds ago; returns how many."""
        old = [j for j in list(self._jobs.values()) if j.state in FINISHED and j.finished < time.time() - max_age_s]
        for job in old:
            self.discard(job)
        return len(old)


class QueueFull(Exception):
    """The queue holds its limit: the caller answers 429."""


class Runner:
    """`workers` threads taking jobs from a queue bounded at `limit`; `work(job)` runs each one."""

    def __init__(self, work: Callable[[Job], None], workers: int, limit: int):
        self.work, self.queue = work, queue.Queue(maxsize=limit)
        self._seconds: list[float] = []  # recent run times, for Retry-After
        self.threads = [threading.Thread(target=self._loop, name=f"tam-serve-worker-{i}", daemon=True)
                        for i in range(workers)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        """Let the workers finish their jobs and stop (queued jobs stay queued: a restart reports them)."""
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        for _ in self.threads:
            self.queue.put(None)

    def submit(self, job: Job) -> None:
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None

    def full(self) -> bool:
        return self.queue.full()

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free: the recent mean run time (at least 1)."""
        recent = self._seconds[-20:]
        return max(1, round(sum(recent) / len(recent))) if recent else 5

    def alive(self) -> bool:
        return all(t.is_alive() for t in self.threads)

    def _loop(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            t0 = time.monotonic()
            try:
                self.work(job)
            except Exception:  # the state folder failing under it (disk full): logged; the worker goes on
                log.exception("job %s: its record could not be written", job.id)
            self._seconds = self._seconds[-19:] + [time.monotonic() - t0]
