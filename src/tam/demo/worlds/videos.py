"""A seeded synthetic world of real video files: short H.264 + AAC MP4s rendered with PyAV whose pixels,
motion and sound carry a latent affect per 1-s segment (see docs/synthetic.md, "video + danmaku world").

Each video has T_v one-second segments at 16 fps. Every segment shows a background (a dim, slowly
drifting grey-blue gradient with pixel noise) with a small white square that wanders slowly, over a low
drone whose pitch is the video's own and noise of one loudness. Into it go *events*:

  - image: one **scene** at a random segment t_s: the frame is tinted with one of 4 hues (red, yellow, green,
    blue: the scene's kind k);
  - audio: one **cue** at a random segment t* (independent of t_s): a loud beep with a rising chirp whose pitch
    is one of 4 (CUE_HZ: the sound's kind j);
  - motion: 1-2 segments (any) where the square (and a second one) **moves fast** up or down: distractors,
    unrelated to the label.

label = (k + j) mod 4: the same scene means another emotion with each sound (a Latin square), 4 classes named
after 4 of the paper's VE-8 emotions (CLASSES), one per quadrant of (valence, arousal). Each modality alone says
nothing about the class by construction: given the scene's kind (image; the motion encoder sees the tint too)
or the sound's kind (audio) alone, every class is equally likely. The label is a relation between the image and
the audio, usually at different segments; a function of one vector per modality combined additively
(concatenation, inner-modal only, with the f^0 readout) cannot represent it (it contains XOR: docs/synthetic.md).
The latent affect of a segment is its class's (valence, arousal) at the *reaction segment* max(t_s, t*), where the
scene has been seen and the sound heard (`VideoPlan.react`), and 60 % of it at the segment after (viewers react
late), neutral elsewhere; the video's regression target is its class's (valence, arousal). Viewers' comments name
the emotion there (tam.demo.worlds.danmaku).
"""

from __future__ import annotations

import colorsys
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tam.errors import TamError
from tam.io import atomic_write, write_json, write_text

FPS = 16
SAMPLE_RATE = 16000
SCENE_HUES = (0.0, 0.15, 0.33, 0.62)  # red, yellow, green, blue
CUE_HZ = (300.0, 600.0, 1200.0, 2400.0)  # the cue's start pitch per sound kind (octaves apart)
CLASSES = ["anger", "sadness", "joy", "trust"]
"""Class index = (scene kind + sound kind) mod 4 (indices into SCENE_HUES and CUE_HZ); names in that index's order."""
AFFECT = {  # (valence, arousal) in [-1, 1] x [0, 1] of each class: the latent at its event segments
    "anger": (-0.6, 0.9), "sadness": (-0.8, 0.2), "joy": (0.9, 0.8), "trust": (0.6, 0.3)}


@dataclass
class VideoWorldSpec:
    labelled: int = 96  # videos with a class label (the supervised set)
    unlabelled: int = 128  # videos with danmaku only (the pre-training corpus)
    min_segments: int = 6
    max_segments: int = 10
    size: int = 64  # frame width and height in pixels (H.264 needs even sizes)
    test_fraction: float = 1 / 3  # of the labelled videos
    seed: int = 0


@dataclass
class VideoPlan:
    """The ground truth of one video: what was rendered in each segment."""

    video: str
    T: int
    cue: int  # t*
    scene: list[int]  # per segment: scene tint 0..3, -1 none
    move: list[int]  # per segment: +1 up, -1 down, 0 none
    label: int
    valence: list[float]  # latent affect per segment
    arousal: list[float]
    drone_hz: float
    sound: int = 0  # the cue's kind j (index into CUE_HZ)

    @property
    def react(self) -> int:
        """The segment where the video's emotion becomes known: the later of the scene's and the cue's (before it,
        a viewer has not both seen the scene and heard the sound)."""
        return max(self.cue, next(t for t, k in enumerate(self.scene) if k >= 0))


def plan_video(rng: np.random.Generator, video: str, spec: VideoWorldSpec) -> VideoPlan:
    """Draw the segments' events and the latent affect of one video."""
    T = int(rng.integers(spec.min_segments, spec.max_segments + 1))
    scene, move = [-1] * T, [0] * T
    kind, sound = int(rng.integers(len(SCENE_HUES))), int(rng.integers(len(CUE_HZ)))
    scene[int(rng.integers(T))] = kind
    cue = int(rng.integers(T))
    for t in rng.choice(T, size=int(rng.integers(1, 3)), replace=False):
        move[int(t)] = int(rng.choice([-1, 1]))
    label = (kind + sound) % len(CLASSES)
    plan = VideoPlan(video, T, cue, scene, move, label, [0.0] * T, [0.1] * T, float(rng.uniform(110, 220)), sound)
    v, a = AFFECT[CLASSES[label]]
    for t, w in ((plan.react, 1.0), (plan.react + 1, 0.6)):
        if t < T:
            plan.valence[t], plan.arousal[t] = round(v * w, 3), round(max(0.1, a * w), 3)
    return plan


def render_frames(plan: VideoPlan, size: int, seed: int) -> np.ndarray:
    """uint8 RGB frames [T * 16, size, size, 3] of the plan."""
    rng = np.random.default_rng([seed, zlib.crc32(plan.video.encode())])
    n = plan.T * FPS
    yy, xx = np.mgrid[0:size, 0:size] / size
    frames = np.empty((n, size, size, 3), np.float32)
    pos = rng.uniform(0.3, 0.7, 2)
    box = max(4, size // 8)
    for i in range(n):
        t, phase = divmod(i, FPS)
        drift = 0.5 + 0.5 * np.sin(2 * np.pi * (i / n) + xx * 2 + yy)
        img = np.stack([0.25 + 0.1 * drift, 0.28 + 0.1 * drift, 0.35 + 0.12 * drift], -1)
        if plan.scene[t] >= 0:
            rgb = colorsys.hsv_to_rgb(SCENE_HUES[plan.scene[t]], 0.85, 0.9)
            img = 0.35 * img + 0.65 * np.array(rgb, np.float32)
        pos = np.clip(pos + rng.normal(0, 0.01, 2), 0.1, 0.9)
        squares = [pos]
        if plan.move[t]:
            y = 0.9 - 0.8 * phase / (FPS - 1) if plan.move[t] > 0 else 0.1 + 0.8 * phase / (FPS - 1)
            squares = [np.array([y, pos[1]]), np.array([y, 1 - pos[1]])]
        for cy, cx in squares:
            r0, c0 = int(cy * size) - box // 2, int(cx * size) - box // 2
            img[max(r0, 0):r0 + box, max(c0, 0):c0 + box] = 1.0
        frames[i] = img + rng.normal(0, 0.03, img.shape)
    return (np.clip(frames, 0, 1) * 255).astype(np.uint8)


def render_audio(plan: VideoPlan, seed: int) -> np.ndarray:
    """float32 mono samples at 16 kHz: a drone, noise of one loudness (no class in it), the cue's beep."""
    rng = np.random.default_rng([seed, zlib.crc32(plan.video.encode()), 1])
    n = plan.T * SAMPLE_RATE
    t = np.arange(n) / SAMPLE_RATE
    x = 0.08 * np.sin(2 * np.pi * plan.drone_hz * t)
    x = x + rng.normal(0, 0.012, n)
    s = plan.cue * SAMPLE_RATE + SAMPLE_RATE // 4
    tb = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    f0 = CUE_HZ[plan.sound]
    x[s:s + len(tb)] += 0.5 * np.sin(2 * np.pi * (f0 * tb + 0.5 * f0 * tb ** 2)) * np.hanning(len(tb))
    return np.clip(x, -1, 1).astype(np.float32)


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray) -> None:
    """Encode frames (H.264, yuv420p, 16 fps) and mono audio (AAC, 16 kHz) into an MP4, atomically."""
    import av

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), "w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=FPS)
            vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            vs.options = {"crf": "23", "preset": "veryfast"}
            aus = out.add_stream("aac", rate=SAMPLE_RATE)
            aus.layout = "mono"
            for f in frames:
                out.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
            out.mux(vs.encode())
            step = 1024
            for i in range(0, len(audio), step):
                chunk = audio[i:i + step][None, :]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
                af.sample_rate, af.pts = SAMPLE_RATE, i
                out.mux(aus.encode(af))
            out.mux(aus.encode())

    atomic_write(path, encode)


def _render(args: tuple[Path, VideoPlan, int, int]) -> str:
    path, plan, size, seed = args
    write_mp4(path, render_frames(plan, size, seed), render_audio(plan, seed))
    return plan.video


def make_videos(root: str | Path, spec: VideoWorldSpec, progress: bool = False,
                workers: int = 1) -> dict[str, list[VideoPlan]]:
    """Render the labelled (`L000`...) and unlabelled (`U000`...) videos; write labels and the ground truth.

    Files: `videos/labelled/*.mp4`, `videos/unlabelled/*.mp4`, `labels.csv` (video,label,split),
    `labels_va.csv` (video,valence,arousal,split), `truth.json` (every plan), `durations.csv`.
    A re-run keeps the videos already rendered (the plans are re-drawn from the seed, identical).
    `workers` > 1 renders in that many processes.
    """
    from tqdm import tqdm

    if spec.size % 2 or spec.size < 32:
        raise TamError(f"video size must be even and >= 32 pixels, got {spec.size}")
    if spec.min_segments < 2 or spec.max_segments < spec.min_segments:
        raise TamError(f"segments must satisfy 2 <= min <= max, got {spec.min_segments}..{spec.max_segments}")
    root = Path(root)
    _check_spec(root / "world_spec.json", spec)
    rng = np.random.default_rng(spec.seed)
    plans = {"labelled": [plan_video(rng, f"L{i:03d}", spec) for i in range(spec.labelled)],
             "unlabelled": [plan_video(rng, f"U{i:03d}", spec) for i in range(spec.unlabelled)]}
    todo = [(root / "videos" / part / f"{p.video}.mp4", p, spec.size, spec.seed) for part, ps in plans.items()
            for p in ps if not (root / "videos" / part / f"{p.video}.mp4").is_file()]
    bar = tqdm(total=len(todo), desc="render videos", unit="video", disable=not progress)
    if workers > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            for _ in pool.map(_render, todo, chunksize=4):
                bar.update(1)
    else:
        for job in todo:
            _render(job)
            bar.update(1)
    bar.close()
    _write_tables(root, plans["labelled"], plans, spec)
    return plans


def _check_spec(path: Path, spec: VideoWorldSpec) -> None:
    """A folder holds one world: resuming with other settings would mix videos of two worlds."""
    import json

    if path.is_file():
        have = json.loads(path.read_text(encoding="utf-8"))
        if have != asdict(spec):
            diff = {k: (have.get(k), v) for k, v in asdict(spec).items() if have.get(k) != v}
            raise TamError(f"{path.parent}: holds a world made with other settings {diff} (old, new); "
                           "use a new folder")
    else:
        write_json(path, asdict(spec))


def _write_tables(root: Path, labelled: list[VideoPlan], plans: dict, spec: VideoWorldSpec) -> None:
    n_test = int(round(len(labelled) * spec.test_fraction))
    split = {p.video: "test" if i < n_test else "" for i, p in enumerate(labelled)}
    write_text(root / "labels.csv", "video,label,split\n" + "".join(
        f"{p.video},{CLASSES[p.label]},{split[p.video]}\n" for p in labelled))
    write_text(root / "labels_va.csv", "video,valence,arousal,split\n" + "".join(
        f"{p.video},{AFFECT[CLASSES[p.label]][0]},{AFFECT[CLASSES[p.label]][1]},{split[p.video]}\n"
        for p in labelled))
    write_text(root / "durations.csv", "video,duration\n" + "".join(
        f"{p.video},{p.T}\n" for ps in plans.values() for p in ps))
    write_json(root / "truth.json", {"spec": asdict(spec), "classes": CLASSES, "affect": AFFECT,
                                     "videos": {part: [asdict(p) for p in ps] for part, ps in plans.items()}})
