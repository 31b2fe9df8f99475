"""`tam extract --engine ray`: decoding in CPU tasks, the encoders in long-lived actors.

- An **actor** (`Encoders`) builds the encoders once (on a GPU of its own, or a share of one) and opens the store.
  Each call `run(group)` extracts a group of `GROUP_VIDEOS` videos through the local engine's own encoding loop
  (`tam.encoders.extract._Runner`: the same batches, atomic per-video entries, notes and per-video errors).
- Its videos are decoded by Ray **tasks** of one CPU each (`_decode`, a streaming generator around the local
  engine's decoding worker), `workers` at a time per actor, on the actor's node when it has room (soft affinity):
  the decoded segments flow to the actor as they come, so decoding overlaps encoding as the local threads do.
- **Backpressure:** a decoding task runs at most `AHEAD` parts ahead of its actor (Ray's generator backpressure),
  and the actor holds at most `queue_parts` decoded parts (the local bound): memory stays bounded whatever the
  length of the videos, about (`AHEAD` x `workers` + `queue_parts`) parts of a few MB per actor.
- Faults: a decoding task whose worker or node dies is run again by Ray (`RETRIES`); a video it could not decode is
  one failed line. The groups of an actor that dies go to the other actors (`ray_engine.map_actors`); a video
  written before is then found in the store ("already in the store").
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tam.encoders.extract import (
    ExtractOptions,
    Job,
    Outcome,
    _group_failed,
    _Runner,
    _worker,
    frame_sizes,
    open_store,
    summary,
)
from tam.encoders.table import FrozenEncoder
from tam.engines import ray_engine
from tam.errors import TamError
from tam.features.store import FeatureStore

GROUP_VIDEOS = 4  # videos sent to an actor at a time: its encoders batch segments across them, as the local job does
AHEAD = 2  # decoded parts a decoding task may run ahead of its actor


def _decode(cwd: str, index: int, job: Job, kw: dict):
    """One video decoded by the local engine's worker (`_worker`), its messages ("start", "part", "end" or "fail")
    yielded one by one (a Ray streaming generator task)."""
    os.chdir(cwd)
    jobs, out, stop = queue.Queue(), queue.Queue(maxsize=1), threading.Event()
    jobs.put((index, job))
    thread = threading.Thread(target=_worker, args=(jobs, out, stop), kwargs=kw, daemon=True)
    thread.start()
    try:
        while (msg := out.get())[0] != "worker-done":
            yield msg
    finally:
        stop.set()


class Encoders:
    """A Ray actor holding the encoders (`build()`, once) and the store; `run(jobs)` extracts a group of videos,
    decoded by `workers` Ray tasks at a time."""

    def __init__(self, build: Callable[[], dict[str, FrozenEncoder]], store_root: str, options: ExtractOptions):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.cwd, self.encoders, self.options = os.getcwd(), build(), options  # the driver's (`ray_engine._Host`)
        self.store = open_store(store_root, self.encoders, options.policy)
        self.kw = {"policy": options.policy, "sizes": frame_sizes(self.encoders), "chunk": options.chunk,
                   "want_audio": "audio" in self.encoders, "threads": 1,  # FFmpeg threads: the task's one CPU
                   "audio_front": self.encoders["audio"].audio_front if "audio" in self.encoders else None}
        # decoding on the actor's node when it has room: the frames stay in that node's object store
        strategy = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True,
                                                  _spill_on_unavailable=True)
        self.decode = ray.remote(_decode).options(num_cpus=1, max_retries=ray_engine.RETRIES, retry_exceptions=False,
                                                  scheduling_strategy=strategy,
                                                  _generator_backpressure_num_objects=AHEAD)

    def run(self, jobs: list[Job]) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        todo: queue.Queue = queue.Queue()
        for i, job in enumerate(jobs):
            if self.store.has(job.video):
                outcomes[i] = Outcome(job.video, job.path, "skipped")
            else:
                todo.put((i, job))
        if not todo.empty():
            runner = _Runner(jobs, self.store, self.encoders, self.options, outcomes, progress=False)
            runner.bar = _Quiet()
            out: queue.Queue = queue.Queue(maxsize=self.options.queue_parts)
            stop = threading.Event()
            n = max(1, min(self.options.workers, todo.qsize()))
            feeds = [threading.Thread(target=self._feed, args=(todo, out, stop), daemon=True) for _ in range(n)]
            for t in feeds:
                t.start()
            try:
                runner._loop(out, n)
            finally:
                stop.set()
        return [outcomes[i] for i in range(len(jobs))]

    def _feed(self, todo: queue.Queue, out: queue.Queue, stop: threading.Event) -> None:
        """Start a decoding task per video taken from `todo` and pass its messages on to the encoding loop."""
        import ray

        def put(msg) -> bool:
            while not stop.is_set():
                try:
                    out.put(msg, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        while not stop.is_set():
            try:
                index, job = todo.get_nowait()
            except queue.Empty:
                break
            stream = self.decode.remote(self.cwd, index, job, self.kw)
            try:
                for ref in stream:
                    if not put(ray.get(ref)):
                        ray.cancel(stream)
                        return
            except Exception as e:  # decoding kept dying: this video fails, the others go on
                put(("fail", index, f"{job.path}: decoding failed ({ray_engine.failure(e).message})"))
        put(("worker-done", -1, None))


class _Quiet:
    """The progress bar of a `_Runner` inside an actor: the driver reports each video."""

    def write(self, *_) -> None:
        pass

    def update(self, *_) -> None:
        pass


def extract_on_ray(jobs: list[Job], store_root: str, build: Callable[[], dict[str, FrozenEncoder]],
                   options: ExtractOptions, actors: int = 0, gpus: float | None = None, cpus: float = 1,
                   address: str = "", progress: bool = True) -> tuple[list[Outcome], str]:
    """`Encoders` actors on the Ray cluster at `address` (`cpus` CPUs and `gpus` GPUs each: None = one where the
    cluster has GPUs, 0.5 = two share one; `actors`: at most (0: as many) as fit beside their decoding tasks, since
    more would hold the CPUs their decoding waits for), fed groups of `GROUP_VIDEOS` videos; returns the outcomes
    (in job order) and the summary. A group whose actor kept dying is reported failed video by video; the videos it
    wrote stay done."""
    from tqdm import tqdm

    ray_engine.connect(address)
    fits, resources = _actors(cpus, gpus, max(1, options.workers))
    n, t0 = min(actors or fits, fits), time.perf_counter()
    # the decoding workers import while the actors build; no CPU held (the actors may need it)
    ray_engine.warm(__name__, tasks=n * max(1, options.workers), cpus=0)
    groups = [jobs[i:i + GROUP_VIDEOS] for i in range(0, len(jobs), GROUP_VIDEOS)]
    outcomes: list[Outcome | None] = [None] * len(jobs)
    with tqdm(total=len(jobs), unit="video", disable=not progress, dynamic_ncols=True) as bar:
        for g, result in ray_engine.map_actors(Encoders, (build, store_root, options), groups, n, resources):
            if isinstance(result, ray_engine.Failure):
                result = _group_failed(groups[g], store_root, result.message)
            for k, o in enumerate(result):
                outcomes[g * GROUP_VIDEOS + k] = o
                if o.status == "failed":
                    bar.write(f"skipped: {o.error}")
                for note in o.notes:
                    bar.write(f"note: {o.path}: {note}")
            bar.update(len(result))
    if not (Path(store_root) / "manifest.json").is_file():  # no actor ever started
        raise TamError(f"{store_root}: nothing extracted ({outcomes[0].error if outcomes else 'no videos'})")
    return outcomes, summary(outcomes, time.perf_counter() - t0, FeatureStore.open(store_root).manifest)


def _actors(cpus: float, gpus: float | None, workers: int) -> tuple[int, dict]:
    """How many actors fit (`ray_engine.fit`) with `workers` one-CPU decoding tasks each beside them, and an actor's
    resources; refuses a cluster too small for one actor and its decoding (the decoding would wait for ever)."""
    import ray

    fits, resources = ray_engine.fit(cpus, gpus)
    total = ray.cluster_resources().get("CPU", 0)
    n = min(fits, int(total // (cpus + workers)))
    if n < 1:
        raise TamError(f"the Ray cluster has {total:g} CPU(s): an actor of {cpus:g} CPU(s) and its {workers} decoding "
                       f"task(s) of 1 CPU need {cpus + workers:g} (--actor-cpus, --workers)")
    return n, resources
