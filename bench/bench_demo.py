"""`tam demo --quick` end to end, per stage, and the two costs the default demo's speed hangs on, side by side.

- The quick pipeline (`tam.demo.run_pipeline(PipelineSpec.quick())`) in a temporary folder: the seconds of each stage
  and the extraction rate in video seconds per wall second (the default `tam demo`'s measured time is in docs/demo.md,
  "Measured").
- The linear baseline beside every run (`tam.eval.linear.fit_classification`, the demo's shape: 153 training videos
  of 5,376 pooled dims, 8 classes) with the BLAS libraries' own thread count and with one thread, as the demo's
  workers now run it (`tam.demo.run.run_group`).
- The random VGGish of the demo's extraction on 32 log-mel examples, plain (NCHW) against channels-last (what
  `tam.encoders.table.FrozenEncoder` does on CPU), with the largest difference of the embeddings.
- Decoding's RGB conversion of 64 x 64 frames (the demo's videos): PyAV's `frame.reformat` (a new scaler per frame)
  against the decoding thread's kept converter (`tam.encoders.video_io.to_rgb24`), CPU ms per frame, and whether
  the pixels are the same.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def run() -> dict[str, float | str]:
    return {**quick(), **linear_threads(), **vggish_layout(), **rgb_convert()}


def quick() -> dict[str, float | str]:
    from tam.demo.run import PipelineSpec, run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        s = run_pipeline(tmp, PipelineSpec.quick(), log=lambda text: None)
    stages = s["seconds_by_stage"]
    e = s["extraction"]
    return {"quick_total_s": round(s["seconds"], 1),
            **{f"{k.replace('-', '_')}_s": round(v, 1) for k, v in stages.items()},
            **{f"{k.replace('-', '_')}_cpu_s": round(v, 1) for k, v in s["cpu_seconds_by_stage"].items()},
            "extract_video_s_per_wall_s": round(e["segments"] / e["seconds"], 2),
            "note": "quick world: 56 videos; default tam demo measured in docs/demo.md"}


def linear_threads() -> dict[str, float]:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from tam.eval.linear import fit_classification

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 5376))
    y = {s: rng.integers(0, 8, n) for s, n in (("train", 153), ("val", 27), ("test", 180))}
    X = {s: centres[v] * 0.2 + rng.normal(size=(len(v), 5376)) for s, v in y.items()}

    def seconds(limit: int | None) -> float:
        t0 = time.perf_counter()
        with threadpool_limits(limit):
            fit_classification(X["train"], y["train"], X["val"], y["val"], X["test"], y["test"], 8)
        return time.perf_counter() - t0

    own, one = seconds(None), seconds(1)
    return {"linear_blas_default_s": round(own, 2), "linear_blas_1_thread_s": round(one, 2)}


def vggish_layout() -> dict[str, float]:
    import torch

    from tam.encoders.table import build_encoder

    enc = build_encoder("vggish", random_init=True)
    x = torch.randn(32, 1, 96, 64)

    def seconds(last: bool) -> tuple[float, torch.Tensor]:
        enc.model.to(memory_format=torch.channels_last if last else torch.contiguous_format)
        z = x.contiguous(memory_format=torch.channels_last) if last else x
        with torch.inference_mode():
            enc.model(z)
            t0 = time.perf_counter()
            y = enc.model(z)
        return time.perf_counter() - t0, y

    (plain, a), (last, b) = seconds(False), seconds(True)
    return {"vggish_32_nchw_s": round(plain, 3), "vggish_32_channels_last_s": round(last, 3),
            "vggish_channels_last_speedup": round(plain / last, 2),
            "vggish_channels_last_max_abs_diff": float((a - b).abs().max())}


def rgb_convert(n: int = 400) -> dict[str, float | bool]:
    import av
    import numpy as np

    from tam.demo.worlds.videos import write_mp4
    from tam.encoders.video_io import to_rgb24

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:  # decoded frames, as the extraction gets them
        path = Path(tmp) / "noise.mp4"
        write_mp4(path, rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8), np.zeros(16_000, np.float32))
        with av.open(str(path)) as c:
            frames = list(c.decode(video=0))

    def ms(convert) -> float:
        t0 = time.process_time()
        for f in frames:
            convert(f)
        return 1000 * (time.process_time() - t0) / len(frames)

    same = all(np.array_equal(to_rgb24(f).to_ndarray(), f.to_ndarray(format="rgb24")) for f in frames)
    return {"rgb_reformat_cpu_ms_per_frame": round(ms(lambda f: f.reformat(format="rgb24")), 3),
            "rgb_kept_converter_cpu_ms_per_frame": round(ms(to_rgb24), 3), "rgb_kept_converter_identical": same}
