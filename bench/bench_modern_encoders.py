"""Per-segment encoder cost of the modern encoders against the paper's, side by side in one run.

Full-size random-init encoders (the cost does not depend on the weights) on already-prepared segment inputs:
`videomae-base` against `r3d50` (motion, 16 frames per segment) and `ast-audioset` against `vggish` (audio).
Figures: seconds per segment for each, and the ratios modern / paper. `TAM_BENCH_MODERN_SEGMENTS` (default 4)
sets how many segments each encoder sees.
"""

from __future__ import annotations

import os
import time

import numpy as np


def _inputs(name: str, n: int) -> np.ndarray:
    from tam.encoders import ast, audio
    from tam.encoders.table import ENCODERS

    rng = np.random.default_rng(0)
    choice = ENCODERS[name]
    if choice.family in ("r3d", "videomae"):
        return (rng.random((n, 16, choice.size, choice.size, 3)) * 255).astype(np.uint8)
    wave = 0.1 * rng.standard_normal(16000 * (n + 1))
    times = np.stack([np.arange(n), np.arange(n) + 1.0], 1)
    if choice.family == "ast":
        return ast.segment_inputs(ast.fbank(wave), times)
    return audio.segment_examples(audio.log_mel(wave), times)


def _seconds_per_segment(name: str, n: int) -> float:
    from tam.encoders.table import build_encoder

    enc = build_encoder(name, random_init=True)
    x = _inputs(name, n)
    enc.encode(x[:1])  # warm-up
    t0 = time.perf_counter()
    enc.encode(x)
    return (time.perf_counter() - t0) / n


def run() -> dict[str, float | str]:
    """Seconds per segment for r3d50, videomae-base, vggish, ast-audioset and the modern / paper ratios."""
    import torch

    n = int(os.environ.get("TAM_BENCH_MODERN_SEGMENTS", "4"))
    out: dict[str, float | str] = {"segments": float(n), "threads": float(torch.get_num_threads())}
    for name in ("r3d50", "videomae-base", "vggish", "ast-audioset"):
        out[f"{name}_s_per_segment"] = round(_seconds_per_segment(name, n), 4)
    out["videomae_over_r3d50"] = round(out["videomae-base_s_per_segment"] / out["r3d50_s_per_segment"], 2)
    out["ast_over_vggish"] = round(out["ast-audioset_s_per_segment"] / out["vggish_s_per_segment"], 2)
    return out


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:32s} {value}")
