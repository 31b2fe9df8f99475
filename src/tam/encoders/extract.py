"""The extraction pipeline: files -> segments -> frozen encoders -> the feature store.

Decoding runs in background threads (`workers`; the work is FFmpeg's C code: decoding, scaling) that hand
runs of segments to the main thread through a bounded queue; the main thread batches segments across videos
and runs the encoders, so decoding hides behind encoder compute. A video is written to the store (one atomic
rename) once all its segments are encoded; a re-run skips the videos already in the store, so a killed run
loses only the videos in progress. Shards (`shard=(i, n)` or torchrun ranks) take every n-th video of the
sorted list and write into one store.

Bad input never stops the batch (unless `strict`): each problem is one line naming the file, and the run ends
with a summary table. Audio-only files give audio features with image and motion marked absent; files
without audio give zeros and `present["audio"] = False`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tam.encoders import audio as audio_fe
from tam.encoders.table import FrozenEncoder
from tam.encoders.video_io import (
    VIDEO_EXTENSIONS,
    FrameSizes,
    MediaInfo,
    SegmentPolicy,
    Segments,
    decode_audio,
    iter_segments,
    open_media,
    pick_audio_stream,
    pick_video_stream,
)
from tam.errors import TamError
from tam.features.store import FeatureStore, Manifest


@dataclass(frozen=True)
class Job:
    video: str  # the id in the store
    path: Path


@dataclass
class Outcome:
    video: str
    path: Path
    status: str  # done | skipped (already in the store) | failed
    T: int = 0
    seconds: float = 0.0  # video duration covered by the segments
    notes: list[str] = field(default_factory=list)
    error: str = ""


# ---- inputs ----------------------------------------------------------------------------------------------
def find_videos(inputs: list[str], list_file: str = "", root: str = "", keep_extension: bool = False) -> list[Job]:
    """Jobs for files, folders (searched recursively for video extensions) and a list file (one path a line).

    Ids: for files found in a folder, the path relative to that folder without the extension (`Fear/abc`);
    for files named directly or listed, the path relative to `root` without extension, else the file stem.
    `keep_extension` keeps the extension in ids (for folders holding `a.mp4` and `a.mkv`).
    """
    jobs: list[Job] = []
    names = list(inputs)
    if list_file:
        base = Path(list_file).parent
        try:
            lines = Path(list_file).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise TamError(f"{list_file}: cannot read the list ({e.strerror})") from None
        names += [str(base / ln.strip()) for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    for name in names:
        path = Path(name)
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS):
                jobs.append(Job(_strip(f.relative_to(path), keep_extension), f))
        else:  # missing files become failed jobs with a clear message
            jobs.append(Job(_file_id(path, root, keep_extension), path))
    seen: dict[str, Path] = {}
    for j in jobs:
        if j.video in seen and seen[j.video] != j.path:
            raise TamError(f"video id {j.video!r} given by both {seen[j.video]} and {j.path}; "
                           "rename one or pass --keep-extension")
        seen[j.video] = j.path
    _check_found(names, jobs)
    return sorted({j.video: j for j in jobs}.values(), key=lambda j: j.video)


def _check_found(names: list[str], jobs: list[Job]) -> None:
    """Refuse inputs that name no video file at all (a typo, an empty folder) before a store is created; a missing
    file among real ones stays a failed job of the summary."""
    if not names or any(j.path.is_file() for j in jobs):
        return
    if not jobs:
        raise TamError(f"{', '.join(names[:3])}: no video files ({' '.join(sorted(VIDEO_EXTENSIONS))}) found")
    raise TamError(f"{', '.join(str(j.path) for j in jobs[:3])}: no such file{'s' if len(jobs) > 1 else ''} "
                   "(no video to read)")


def _file_id(path: Path, root: str, keep_extension: bool) -> str:
    if root:
        try:
            return _strip(path.resolve().relative_to(Path(root).resolve()), keep_extension)
        except ValueError:
            pass
    return _strip(Path(path.name), keep_extension)


def _strip(rel: Path, keep_extension: bool) -> str:
    return (rel if keep_extension else rel.with_suffix("")).as_posix()


def shard_jobs(jobs: list[Job], index: int, count: int) -> list[Job]:
    """Every `count`-th job starting at `index` (the list is sorted by id, so shards are disjoint and stable)."""
    if not 0 <= index < count:
        raise TamError(f"shard {index}/{count}: need 0 <= i < n")
    return jobs[index::count]


# ---- decoding (worker threads) -----------------------------------------------------------------------
@dataclass
class _Part:
    index: int  # job index
    seg: Segments
    audio: np.ndarray | None  # [n, ...] the audio encoder's inputs (VGGish: [n, 96, 64] log-mel examples)


def _decode_job(index: int, job: Job, policy: SegmentPolicy, sizes: FrameSizes, want_audio: bool, chunk: int,
                put: Callable, stop: threading.Event,
                audio_front: tuple[Callable, Callable] | None = None, threads: int = 0) -> MediaInfo:
    """Decode one file and `put` its parts; `audio_front` is the audio encoder's (features, per-segment inputs),
    `threads` FFmpeg's video decoding threads (0 = FFmpeg's choice)."""
    features, examples_of = audio_front or (audio_fe.log_mel, audio_fe.segment_examples)
    info = MediaInfo(job.path)
    with open_media(job.path, info) as c:
        has_video, has_audio = pick_video_stream(c) is not None, pick_audio_stream(c) is not None
    if not has_video and not has_audio:
        raise TamError(f"{job.path}: no video or audio stream")
    audio = _Audio(job.path, features, info) if (has_audio and (want_audio or not has_video)) else None
    try:
        if has_video:
            parts = iter_segments(job.path, info, policy, sizes, chunk, threads)
        else:
            wave = audio.join()[0] if audio is not None else None
            if wave is None or len(wave) == 0:
                raise TamError(f"{job.path}: no video stream, and the audio stream does not decode")
            info.notes.append("audio only: image and motion marked absent")
            parts = _audio_only_segments(len(wave) / audio_fe.SAMPLE_RATE, policy, chunk)
        for seg in parts:
            if stop.is_set():
                raise TamError(f"{job.path}: stopped")
            mel = audio.join()[1] if audio is not None else None
            examples = examples_of(mel, seg.times) if (mel is not None and want_audio) else None
            put(("part", index, _Part(index, seg, examples)))
    finally:
        if audio is not None:
            audio.thread.join()
    if want_audio and has_video and not has_audio:
        info.notes.append("no audio stream: audio marked absent")
    return info


class _Audio:
    """A file's audio decoded (and its features computed) in a thread beside the video, so that the first
    segments reach the encoders sooner; `join()` gives (wave, features) and files the audio's notes in `info`
    where decoding the audio first would have put them."""

    def __init__(self, path: Path, features: Callable, info: MediaInfo):
        self.own: MediaInfo | None = MediaInfo(path)
        self.info, self.at = info, len(info.notes)
        self.result: tuple | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(path, features, self.own), daemon=True)
        self.thread.start()

    def _run(self, path: Path, features: Callable, own: MediaInfo) -> None:
        try:
            wave = decode_audio(path, own)
            self.result = (wave, features(wave) if wave is not None else None)
        except BaseException as e:  # raised again by join(), in the decoding worker
            self.error = e

    def join(self) -> tuple:
        if self.own is not None:
            self.thread.join()
            if self.error is None:
                self.info.audio = self.own.audio
                self.info.decode_errors += self.own.decode_errors
                self.info.notes[self.at:self.at] = self.own.notes
                self.own = None  # filed once
        if self.error is not None:
            raise self.error
        return self.result


def _audio_only_segments(duration: float, policy: SegmentPolicy, chunk: int):
    """Segment times for a file without video: the fixed-rate grid (16 fps when the policy is native)."""
    length = policy.frames / (16.0 if policy.native else policy.fps)
    n = int(duration // length)
    n += (duration - n * length >= length / 2 - 1e-9) or n == 0  # the same rule as for video
    times = np.stack([np.arange(n) * length, np.minimum((np.arange(n) + 1) * length, max(duration, 1e-3))], 1)
    for s in range(0, n, chunk):
        yield Segments(s, times[s:s + chunk], None, None)


def _worker(jobs: queue.Queue, out: queue.Queue, stop: threading.Event, **kw) -> None:
    def put(msg):
        while not stop.is_set():
            try:
                out.put(msg, timeout=0.2)
                return
            except queue.Full:
                continue

    while not stop.is_set():
        try:
            index, job = jobs.get_nowait()
        except queue.Empty:
            break
        put(("start", index, None))
        try:
            info = _decode_job(index, job, put=put, stop=stop, **kw)
            put(("end", index, info))
        except TamError as e:
            put(("fail", index, str(e)))
        except Exception as e:  # a decoder bug must not kill the batch: report it with the file's name
            put(("fail", index, f"{job.path}: unexpected {type(e).__name__}: {str(e)[:200]}"))
            traceback.print_exc()
    put(("worker-done", -1, None))


# ---- encoding (main thread) -------------------------------------------------------------------------
@dataclass
class _Acc:
    """Features of one video collected so far."""

    parts: list = field(default_factory=list)  # (start, times, {m: array or None}, frozen)
    info: MediaInfo | None = None
    ended: bool = False
    pending: int = 0  # parts not encoded yet


def _encode(parts: list[_Part], encoders: dict[str, FrozenEncoder]) -> list[dict]:
    """Run each encoder once over the segments of all parts that have its input; split back per part."""
    results: list[dict] = [{} for _ in parts]
    for m, enc in encoders.items():
        have = [i for i, p in enumerate(parts) if _input(p, m) is not None]
        for i, p in enumerate(parts):
            if _input(p, m) is None:
                results[i][m] = None
        if not have:
            continue
        feats = enc.encode(np.concatenate([_input(parts[i], m) for i in have]))
        offset = 0
        for i in have:
            n = len(parts[i].seg.times)
            results[i][m] = feats[offset:offset + n]
            offset += n
    return results


def _input(part: _Part, modality: str):
    return {"image": part.seg.image, "motion": part.seg.motion, "audio": part.audio}[modality]


def frame_sizes(encoders: dict[str, FrozenEncoder]) -> FrameSizes:
    """What the decoder must cut for these encoders: each video encoder's size, PIL filter and crop offset rule."""
    kw = {}
    for m in ("motion", "image"):
        enc = encoders.get(m)
        kw[m] = enc.choice.size if enc is not None else 0
        if enc is not None:
            kw[f"{m}_resample"], kw[f"{m}_offset"] = enc.choice.resample, enc.choice.offset
    return FrameSizes(**kw)


@dataclass
class ExtractOptions:
    policy: SegmentPolicy = field(default_factory=SegmentPolicy)
    batch: int = 16  # segments per encoder call (across videos)
    workers: int = 1  # decoding threads
    chunk: int = 4  # segments per decoded part (small: encoding starts early)
    strict: bool = False  # the first failure stops the run
    queue_parts: int = 6  # decoded parts held in memory at most
    decode_threads: int = 0  # FFmpeg threads per decoding worker; 0 = auto (`decode_threads`)


def decode_threads(options: ExtractOptions) -> int:
    """FFmpeg threads per decoding worker: the option, or (auto) the cores torch's threads leave, shared by the
    workers (at least 1). FFmpeg's own default (one thread per core, plus one) would compete with the encoders
    for their cores: on 2 cores with 1 torch thread it slowed the pipeline by about as much as decoding cost."""
    if options.decode_threads > 0:
        return options.decode_threads
    import torch

    from tam.train.threads import cores

    return max(1, (cores() - torch.get_num_threads()) // max(1, options.workers))


def extract(jobs: list[Job], store: FeatureStore, encoders: dict[str, FrozenEncoder],
            options: ExtractOptions | None = None, progress: bool = True, stats: dict | None = None) -> list[Outcome]:
    """Extract features for `jobs` into `store`; returns one `Outcome` per job (in job order).

    `stats`, when given, receives where the encoding thread's time went: `encode_s` (in the encoders), `wait_s`
    (waiting for decoded segments: the overlap lost) and `batches` (segments per encoder call)."""
    options = options or ExtractOptions()
    outcomes: dict[int, Outcome] = {}
    todo = []
    for i, job in enumerate(jobs):
        if store.has(job.video):
            outcomes[i] = Outcome(job.video, job.path, "skipped")
        else:
            todo.append((i, job))
    if todo:
        runner = _Runner(jobs, store, encoders, options, outcomes, progress)
        runner.run(todo)
        if stats is not None:
            stats.update(runner.stats)
    return [outcomes[i] for i in range(len(jobs))]


class _Runner:
    def __init__(self, jobs, store, encoders, options, outcomes, progress):
        self.jobs, self.store, self.encoders, self.opt = jobs, store, encoders, options
        self.outcomes, self.progress = outcomes, progress
        self.acc: dict[int, _Acc] = {}
        self.waiting: list[_Part] = []
        self.stats: dict = {"encode_s": 0.0, "wait_s": 0.0, "batches": []}

    def run(self, todo: list) -> None:
        from tqdm import tqdm

        sizes = frame_sizes(self.encoders)
        jobs_q: queue.Queue = queue.Queue()
        for item in todo:
            jobs_q.put(item)
        out: queue.Queue = queue.Queue(maxsize=self.opt.queue_parts)
        stop = threading.Event()
        kw = {"policy": self.opt.policy, "sizes": sizes, "want_audio": "audio" in self.encoders,
              "chunk": self.opt.chunk, "threads": decode_threads(self.opt),
              "audio_front": self.encoders["audio"].audio_front if "audio" in self.encoders else None}
        n_workers = max(1, min(self.opt.workers, len(todo)))
        threads = [threading.Thread(target=_worker, args=(jobs_q, out, stop), kwargs=kw, daemon=True)
                   for _ in range(n_workers)]
        self.bar = tqdm(total=len(todo), unit="video", disable=not self.progress, dynamic_ncols=True)
        for t in threads:
            t.start()
        try:
            self._loop(out, n_workers)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=5)
            self.bar.close()

    def _loop(self, out: queue.Queue, n_workers: int) -> None:
        done_workers = 0
        while done_workers < n_workers or self.waiting:
            t0 = time.perf_counter()
            try:
                kind, index, payload = out.get(timeout=0.05) if done_workers < n_workers else ("idle", -1, None)
            except queue.Empty:
                kind, index, payload = "idle", -1, None
            self.stats["wait_s"] += time.perf_counter() - t0
            if kind == "worker-done":
                done_workers += 1
            elif kind == "start":
                self.acc[index] = _Acc()
            elif kind == "part":
                self.acc[payload.index].pending += 1
                self.waiting.append(payload)
            elif kind == "end":
                self.acc[index].ended, self.acc[index].info = True, payload
            elif kind == "fail":
                self._fail(index, payload)
            ready = sum(len(p.seg.times) for p in self.waiting)
            if self.waiting and (ready >= self.opt.batch or out.empty() or kind == "idle"):
                self._encode_waiting()
            self._write_finished()

    def _encode_waiting(self) -> None:
        parts = [p for p in self.waiting if p.index in self.acc]
        self.waiting = []
        t0 = time.perf_counter()
        encoded = _encode(parts, self.encoders)
        self.stats["encode_s"] += time.perf_counter() - t0
        self.stats["batches"].append(sum(len(p.seg.times) for p in parts))
        for p, feats in zip(parts, encoded):
            acc = self.acc[p.index]
            acc.parts.append((p.seg.start, p.seg.times, feats, p.seg.frozen))
            acc.pending -= 1

    def _write_finished(self) -> None:
        for index in [i for i, a in self.acc.items() if a.ended and a.pending == 0]:
            acc = self.acc.pop(index)
            job = self.jobs[index]
            try:
                T, seconds = self._write(job, acc)
                self.outcomes[index] = Outcome(job.video, job.path, "done", T, seconds, acc.info.notes)
                for note in acc.info.notes:
                    self.bar.write(f"note: {job.path}: {note}")
            except TamError as e:
                self._fail(index, f"{job.path}: {e}")
                continue
            self.bar.update(1)

    def _write(self, job: Job, acc: _Acc) -> tuple[int, float]:
        parts = sorted(acc.parts, key=lambda p: p[0])
        times = np.concatenate([p[1] for p in parts])
        feats = {}
        for m in self.encoders:
            arrays = [p[2][m] for p in parts]
            feats[m] = None if any(a is None for a in arrays) else np.concatenate(arrays)
        info = acc.info
        extra = {"source": str(job.path), "format": info.format, "video_stream": info.video,
                 "audio_stream": info.audio, "rotation": info.rotation, "decode_errors": info.decode_errors,
                 "frozen_segments": [i for p in parts for i in p[3]], "notes": info.notes}
        self.store.write(job.video, feats, times, extra=extra)
        return len(times), float(times[-1, 1] - times[0, 0])

    def _fail(self, index: int, message: str) -> None:
        job = self.jobs[index]
        self.acc.pop(index, None)
        self.waiting = [p for p in self.waiting if p.index != index]
        self.outcomes[index] = Outcome(job.video, job.path, "failed", error=message)
        self.bar.write(f"skipped: {message}")
        self.bar.update(1)
        if self.opt.strict:
            raise TamError(f"{message} (--strict: stopping)")


# ---- building the store and the summary -------------------------------------------------------------
def open_store(root: str | os.PathLike, encoders: dict[str, FrozenEncoder], policy: SegmentPolicy) -> FeatureStore:
    """Create the store (or reopen it, refusing other encoders or another segment policy)."""
    manifest = Manifest(encoders={m: e.record for m, e in encoders.items()}, segment=policy.describe())
    if (Path(root) / "manifest.json").is_file():
        have = FeatureStore.open(root).manifest.segment
        if have != manifest.segment:
            raise TamError(f"{root}: the store was cut as {have!r}, not {manifest.segment!r}; use a new folder")
    return FeatureStore.create(root, manifest)


def summary(outcomes: list[Outcome], wall: float, manifest: Manifest) -> str:
    """A readable table: counts, segments, speed, then every failed file with its reason."""
    done = [o for o in outcomes if o.status == "done"]
    failed = [o for o in outcomes if o.status == "failed"]
    seconds = sum(o.seconds for o in done)
    rows = [("videos written", str(len(done))),
            ("already in the store", str(sum(o.status == "skipped" for o in outcomes))),
            ("failed", str(len(failed))),
            ("with notes", str(sum(bool(o.notes) for o in done))),
            ("segments written", str(sum(o.T for o in done))),
            ("video seconds", f"{seconds:.1f}"),
            ("wall seconds", f"{wall:.1f}"),
            ("video s per wall s", f"{seconds / wall:.2f}" if wall > 0 else "-")]
    width = max(len(k) for k, _ in rows)
    lines = ["", "summary", "-" * (width + 12)] + [f"{k.ljust(width)}  {v}" for k, v in rows]
    if failed:
        lines += ["", "failed files:"] + [f"  {o.error}" for o in failed]
    if manifest.random_init:
        lines += ["", "WARNING: random-init encoders: these features are NOT real (tests and demos only)"]
    return "\n".join(lines)


def run_extraction(jobs: list[Job], store_root: str, encoders: dict[str, FrozenEncoder], options: ExtractOptions,
                   progress: bool = True, stats: dict | None = None) -> tuple[list[Outcome], str]:
    """Open the store, extract (`stats`: see `extract`), and return the outcomes with the summary text."""
    store = open_store(store_root, encoders, options.policy)
    t0 = time.perf_counter()
    outcomes = extract(jobs, store, encoders, options, progress=progress, stats=stats)
    return outcomes, summary(outcomes, time.perf_counter() - t0, store.manifest)


# ---- on a Ray cluster (`tam.engines`) ---------------------------------------------------------------
def extract_on_ray(jobs: list[Job], store_root: str, build: Callable[[], dict[str, FrozenEncoder]],
                   options: ExtractOptions, actors: int = 0, gpus: float | None = None, cpus: float = 1,
                   address: str = "", progress: bool = True) -> tuple[list[Outcome], str]:
    """The extraction on the Ray cluster at `address`: decoding tasks feeding encoder actors that hold the encoders
    (`tam.engines.extraction.extract_on_ray`, where the arguments are described)."""
    from tam.engines.extraction import extract_on_ray as on_ray

    return on_ray(jobs, store_root, build, options, actors, gpus, cpus, address, progress)


def _group_failed(jobs: list[Job], store_root: str, message: str) -> list[Outcome]:
    """The outcomes of a group whose call failed (`--strict` stopped it, or its actors kept dying): the videos it
    wrote before are done, the others failed with the reason."""
    store = FeatureStore.open(store_root) if (Path(store_root) / "manifest.json").is_file() else None
    return [Outcome(j.video, j.path, "done", store.read(j.video).T) if store is not None and store.has(j.video)
            else Outcome(j.video, j.path, "failed", error=message if str(j.path) in message else f"{j.path}: {message}")
            for j in jobs]
