"""Feature extraction speed: a 640x360 H.264 + AAC video through full-size random-init encoders.

Measured side by side in one run, with `tam extract`'s automatic thread budget (torch threads
cores // (1 + workers), FFmpeg threads the cores torch leaves; both reported, with the load average): the whole
pipeline (`tam.encoders.extract`, decoding in a background thread), decoding alone (the same decode + resize +
log-mel work, FFmpeg threads included, the pipeline's thread does) and encoding alone (the same segments, already
decoded, through the same encoders and batches). The target is wall <= 1.15 x max(decode, encode): decoding
hidden behind compute. Decoding cuts each frame as the reference
processors do (full-size RGB, then PIL resize; 16 native frames + 1 image per segment); `crop_ms_per_frame_*`
prices that against one swscale pass that scales while converting (what tam did before). The video is 30 s by
default to keep the benchmark short; `TAM_BENCH_EXTRACT_SECONDS=120` runs the issue's 2-minute version.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def make_video(path: Path, seconds: float, fps: int = 30, size=(640, 360)) -> Path:
    """Moving shapes over a gradient with a little noise, and a tone sweep: content that compresses like video."""
    import av

    w, h = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        a = out.add_stream("aac", rate=44100)
        a.layout = "stereo"
        for i in range(int(seconds * fps)):
            t = i / fps
            img = np.empty((h, w, 3), np.uint8)
            img[..., 0] = (xx + 40 * t) % 256
            img[..., 1] = (yy + 25 * t) % 256
            img[..., 2] = 128 + 100 * np.sin(t)
            cx, cy = int(w / 2 + 200 * np.sin(t * 0.7)), int(h / 2 + 100 * np.cos(t * 1.3))
            img[max(cy - 40, 0):cy + 40, max(cx - 40, 0):cx + 40] = (255, 255, 255)
            img = np.clip(img + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        n = int(seconds * 44100)
        tt = np.arange(n) / 44100
        wave = (0.3 * np.sin(2 * np.pi * (200 + 20 * tt) * tt) + 0.02 * rng.normal(size=n)).astype(np.float32)
        for i in range(0, n, 1024):
            block = np.ascontiguousarray(np.stack([wave[i:i + 1024]] * 2))
            f = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            f.sample_rate, f.pts = 44100, i
            for p in a.encode(f):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    return path


def _decode_only(path: Path, encoders, options):
    """The pipeline's decode work, alone (same sizes, chunks and FFmpeg threads): returns (seconds, parts)."""
    from tam.encoders.extract import Job, _decode_job, decode_threads, frame_sizes

    parts = []
    sizes = frame_sizes(encoders)
    t0 = time.perf_counter()
    _decode_job(0, Job("v", path), options.policy, sizes, True, options.chunk,
                lambda msg: parts.append(msg[2]), threading.Event(), encoders["audio"].audio_front,
                decode_threads(options))
    return time.perf_counter() - t0, parts


def _encode_only(parts, encoders, batch: int) -> float:
    """The same segments through the same encoders, in batches of `batch` segments."""
    from tam.encoders.extract import _encode

    t0 = time.perf_counter()
    group, n = [], 0
    for p in parts:
        group.append(p)
        n += len(p.seg.times)
        if n >= batch:
            _encode(group, encoders)
            group, n = [], 0
    if group:
        _encode(group, encoders)
    return time.perf_counter() - t0


def _crop_cost(path: Path, frames: int = 48) -> dict[str, float]:
    """ms per frame for the motion + image crops: the reference-exact path (full-size RGB, then PIL) that
    extraction uses, against one swscale pass that scales while converting (faster, not what the references do)."""
    import av

    from tam.encoders.video_io import frame_to_crop, resized_size

    with av.open(str(path)) as c:
        decoded = [f for _, f in zip(range(frames), c.decode(video=0))]

    def swscale(f, size, interpolation):
        w, h = resized_size(f.width, f.height, size)
        rgb = f.reformat(width=w, height=h, format="rgb24", interpolation=interpolation).to_ndarray()
        return rgb[(h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size]

    t0 = time.perf_counter()
    for f in decoded:
        frame_to_crop(f, 112, 0, 1.0, "bilinear", "round"), frame_to_crop(f, 224, 0, 1.0, "bicubic", "floor")
    t1 = time.perf_counter()
    for f in decoded:
        swscale(f, 112, "BILINEAR"), swscale(f, 224, "BICUBIC")
    t2 = time.perf_counter()
    return {"crop_ms_per_frame_reference": 1e3 * (t1 - t0) / frames,
            "crop_ms_per_frame_swscale": 1e3 * (t2 - t1) / frames}


def run() -> dict[str, float | str]:
    import torch

    from tam.train.threads import set_threads

    before = torch.get_num_threads()
    try:  # tam extract's automatic thread budget, as `tam extract` sets it; restored for the other benchmarks
        return _run(set_threads(0, 1))
    finally:
        torch.set_num_threads(before)


def _run(torch_threads: int) -> dict[str, float | str]:
    import torch

    from tam.encoders.extract import ExtractOptions, Job, decode_threads, run_extraction
    from tam.encoders.table import DEFAULTS, build_encoder
    from tam.train.threads import cores

    seconds = float(os.environ.get("TAM_BENCH_EXTRACT_SECONDS", "30"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        path = make_video(Path(tmp) / "bench.mp4", seconds)
        encoders = {m: build_encoder(n, random_init=True, device=device) for m, n in DEFAULTS.items()}
        options = ExtractOptions(workers=1)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        stats: dict = {}
        outcomes, _ = run_extraction([Job("bench", path)], str(Path(tmp) / "store"), encoders, options,
                                     progress=False, stats=stats)
        wall = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert outcomes[0].status == "done", outcomes[0].error
        decode, parts = _decode_only(path, encoders, options)
        encode = _encode_only(parts, encoders, options.batch)
        crops = _crop_cost(path)
    return {"video_seconds": seconds, "device": device, "encoders": ", ".join(DEFAULTS.values()) + " (random init)",
            "torch_threads": torch_threads, "decode_threads": decode_threads(options), "cores": cores(),
            "load_avg_1min_before": load_before, "load_avg_1min_after": os.getloadavg()[0],
            "wall_s": wall, "decode_only_s": decode, "encode_only_s": encode,
            "pipeline_encode_s": stats["encode_s"], "pipeline_wait_s": stats["wait_s"],
            "pipeline_batches": " ".join(map(str, stats["batches"])),
            "wall_over_max": wall / max(decode, encode), "video_s_per_s": seconds / wall,
            "peak_rss_mb_pipeline": peak_mb, **crops}


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k:>22}  {v:.4g}" if isinstance(v, float) else f"{k:>22}  {v}")
