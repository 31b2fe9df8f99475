"""The service behind the routes: one loaded `Predictor`, the job store, the worker pool and the metrics.

A job runs `Predictor(...)` on its one video exactly as `tam predict` would (a temporary feature store per job),
with the predictor's encoders wrapped for this job only: each encoder batch advances the job's progress and
checks its time limit (past it the job fails with a one-line reason; Python threads cannot be stopped between
batches, so the limit is checked there).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from tam.errors import TamError, first_line
from tam.io import write_json, write_text
from tam.serve.jobs import Job, JobStore, QueueFull, Runner
from tam.serve.metrics import Metrics
from tam.serve.options import ServeOptions

log = logging.getLogger("tam.serve")


class TimeLimit(Exception):
    """A job ran past `--time-limit`."""


class Watched:
    """An encoder seen by one job: each `encode` checks the job's deadline, then advances its progress."""

    def __init__(self, encoder, job: Job, deadline: float, counts: bool):
        self._encoder, self._job, self._deadline, self._counts = encoder, job, deadline, counts

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode(self, batch):
        if time.monotonic() > self._deadline:
            raise TimeLimit
        out = self._encoder.encode(batch)
        if self._counts:
            job = self._job
            job.progress = min(0.95, job.progress + 0.95 * len(batch) / max(1, job.expected_segments))
        return out


class Service:
    """Everything a request needs; `start` recovers the state folder and starts the workers."""

    def __init__(self, options: ServeOptions, predictor):
        self.options, self.predictor = options, predictor
        self.store = JobStore(options.state)
        self.metrics = Metrics()
        self.runner = Runner(self.run, options.workers, options.queue)
        self.tokens = options.tokens()
        self.started = 0.0
        self._sweeper = threading.Event()

    # ---- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        cut = self.store.recover()
        if cut:
            log.warning("%d job(s) were cut off by the last stop: marked interrupted", len(cut))
        self.expire()
        self.runner.start()
        if self.options.expire_hours:
            threading.Thread(target=self._sweep, name="tam-serve-expiry", daemon=True).start()
        self.started = time.time()

    def stop(self) -> None:
        self._sweeper.set()
        self.runner.stop()

    def ready(self) -> bool:
        return bool(self.started) and self.runner.alive()

    def expire(self) -> int:
        return self.store.expire(self.options.expire_hours * 3600) if self.options.expire_hours else 0

    def _sweep(self) -> None:
        every = min(60.0, self.options.expire_hours * 3600 / 4)
        while not self._sweeper.wait(every):
            self.expire()

    def model_info(self) -> dict:
        """What is loaded: task, classes, fusion, encoders, segment rule, the model card's summary, warnings."""
        meta, p = self.predictor.meta, self.predictor
        encoders = meta.get("features", {}).get("encoders", {})
        info = {"model": p.model, "task": meta["task"], "classes": meta.get("classes", []),
                "fusion": meta["model"]["fusion"], "modalities": list(meta["model"]["modalities"]),
                "encoders": {m: {k: e.get(k) for k in ("name", "dim", "random_init")} for m, e in encoders.items()},
                "segment": meta.get("features", {}).get("segment", ""), "device": p.device,
                "words": bool(p.words), "card": model_card(p.model), "warnings": []}
        if any(e.get("random_init") for e in encoders.values()):
            info["warnings"].append("random-init encoders: predictions are NOT real (tests and demos only)")
        return info

    # ---- jobs --------------------------------------------------------------------------------------------
    def segment_seconds(self) -> float:
        from tam.encoders.video_io import SegmentPolicy

        policy = SegmentPolicy.parse(self.predictor.meta.get("features", {}).get("segment", ""))
        return policy.frames / policy.fps if policy and not policy.native else 1.0

    def needs_video(self) -> bool:
        return bool({"image", "motion"} & set(self.predictor.meta["model"]["modalities"]))

    def submit(self, job: Job) -> None:
        """Record `job` and queue it (QueueFull: the job is deleted and the caller answers 429)."""
        self.store.add(job)
        try:
            self.runner.submit(job)
        except QueueFull:
            self.store.discard(job)
            raise

    def run(self, job: Job) -> None:
        """Predict one job and record its outcome (never raises: a worker survives every job)."""
        job.state, job.started = "running", time.time()
        self.store.save(job)
        self.metrics.wait.observe(job.started - job.created)
        try:
            result = self._predict(job)
            job.state, job.error = ("done", "") if result["status"] == "ok" else ("failed", result["error"])
        except TimeLimit:
            job.state, job.error = "failed", f"{job.name}: over the time limit of {self.options.time_limit:g} s"
        except TamError as e:
            job.state, job.error = "failed", _named(str(e), job)
        except Exception as e:  # a bug or a broken file the decoders did not catch: logged, the job fails alone
            log.exception("job %s failed", job.id)
            job.state, job.error = "failed", f"{job.name}: internal error ({type(e).__name__}: {first_line(e)})"
        job.finished = time.time()
        job.progress = 1.0 if job.state == "done" else job.progress
        self.store.save(job)
        self.metrics.finished.labels(job.state).inc()
        self.metrics.run.observe(job.finished - job.started)
        self.metrics.latency.observe(job.finished - job.created)

    def _predict(self, job: Job) -> dict:
        deadline = time.monotonic() + self.options.time_limit
        first = next(iter(self.predictor.meta["model"]["modalities"]))
        o = self.options

        def wrap(encoders: dict) -> dict:
            return {m: Watched(e, job, deadline, m == first) for m, e in encoders.items()}

        kw = {"timeline": o.timeline, "batch": o.batch, "progress": False, "log": lambda s: None}
        if job.features:
            (r,) = self.predictor([job.source], features=job.features, **kw)
        else:
            (r,) = self.predictor([job.source], encoders=wrap, **kw)
        if time.monotonic() > deadline:
            raise TimeLimit
        if r["status"] == "ok" and job.danmaku:
            r["danmaku"] = danmaku_track(job.danmaku, r["timeline"])
        r["source"] = job.name
        if "error" in r:
            r["error"] = _named(r["error"], job)
        write_json(self.store.folder(job.id) / "result.json", r)
        return r

    def report(self, job: Job) -> Path:
        """The job's HTML report page, written on the first request (a job that never asks costs nothing)."""
        path = self.store.folder(job.id) / "report.html"
        if not path.is_file():
            import json

            r = json.loads((self.store.folder(job.id) / "result.json").read_text(encoding="utf-8"))
            write_text(path, report_page(r, job))
        return path


def _named(text: str, job: Job) -> str:
    """A message with the job's server path replaced by the name the client gave."""
    return text if job.features else text.replace(job.source, job.name)


def model_card(model: str) -> str:
    """The first paragraph of the model folder's card (README.md) after its title, or ""."""
    card = Path(model) / "README.md"
    if not card.is_file():
        return ""
    text = card.read_text(encoding="utf-8", errors="replace")
    end = text.find("\n---", 3) if text.startswith("---") else -1
    text = text[end + 4:] if end >= 0 else text  # after the YAML front matter
    paras = [p.strip() for p in text.split("\n\n") if p.strip() and not p.lstrip().startswith("#")]
    return paras[0][:2000] if paras else ""


def danmaku_track(path: str, timeline: dict) -> dict:
    """The danmaku count per timeline segment (and in all) of a job's danmaku file."""
    import bisect

    from tam.serve.media import read_comments

    times = read_comments(Path(path), Path(path).name)
    per = [bisect.bisect_left(times, e) - bisect.bisect_left(times, s)
           for s, e in zip(timeline["start"], timeline["end"])]
    return {"comments": len(times), "per_segment": per}


def report_page(r: dict, job: Job) -> str:
    """The video's self-contained HTML report (plot, frames from the job's file); `r` names the upload only."""
    from tam.infer.report import plot_png, thumbnails, video_page

    frames = thumbnails(job.source, r) if not job.features else []
    return video_page(r, plot_png(r), frames)

