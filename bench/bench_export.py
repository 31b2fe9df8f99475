"""Fusion latency per video, onnxruntime vs PyTorch, CPU, measured side by side in one run.

A random-init CTM classifier (8 classes) at the paper's size (`ModelConfig()`: d = 768, 12 layers, T = 64) on
the paper's feature widths, exported with `tam.hub.onnx.export_onnx` (which checks it on 100 padded videos
with a missing audio track), then one video (a window of T segments, B = 1) through fusion + head in each
runtime, alternating, REPEATS times; figures are medians. Both runtimes get the same number of threads
(`TAM_BENCH_EXPORT_THREADS`, default 1). `TAM_BENCH_EXPORT_SIZE=small` uses d = 64, 2 layers, T = 16.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

REPEATS = 30


def run() -> dict[str, float | str]:
    import torch

    from tam import PAPER_DIMS
    from tam.config import ModelConfig
    from tam.hub.onnx import OnnxFusion, example, export_onnx
    from tam.models.model import build_model

    torch.set_num_threads(int(os.environ.get("TAM_BENCH_EXPORT_THREADS", "1")))
    small = os.environ.get("TAM_BENCH_EXPORT_SIZE") == "small"
    cfg = ModelConfig(d=64, layers=2, heads=4, T=16) if small else ModelConfig()
    torch.manual_seed(0)
    model = build_model(cfg, PAPER_DIMS, 8).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        t0 = time.perf_counter()
        entry = export_onnx(model, PAPER_DIMS, path, cfg.T)
        export_s = time.perf_counter() - t0
        runner = OnnxFusion(path, list(PAPER_DIMS), 8)
        *xs, valid, present = example(PAPER_DIMS, 1, cfg.T, pad=False, seed=1)
        x = dict(zip(PAPER_DIMS, xs))
        times: dict[str, list[float]] = {"torch": [], "onnx": []}
        with torch.no_grad():
            for i in range(REPEATS + 3):  # 3 warm-up rounds
                for name, fn in (("torch", model), ("onnx", runner)):
                    t0 = time.perf_counter()
                    fn(x, valid, present)
                    if i >= 3:
                        times[name].append(time.perf_counter() - t0)
    pt, ort = statistics.median(times["torch"]), statistics.median(times["onnx"])
    return {"model": f"ctm d={cfg.d} L={cfg.layers} T={cfg.T}, {torch.get_num_threads()} thread(s)",
            "torch_ms_per_video": 1e3 * pt, "onnx_ms_per_video": 1e3 * ort, "onnx_speedup": pt / ort,
            "max_abs_diff": entry["max_abs_diff"], "export_seconds": export_s}
