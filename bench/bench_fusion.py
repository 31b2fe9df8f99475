"""Fusion benchmark at the paper's size (d=768, L=12, 8 heads, T=64, M=3, batch 8), forward + backward.

Measured side by side in one run, with TAM_BENCH_FUSION_THREADS (default 2) torch threads:
  - CTM vs joint attention (same attention FLOPs; target: CTM <= 1.15x its time);
  - achieved FLOP rate of a CTM training step / this machine's dense fp32 matmul rate (target >= 0.85);
  - fast CTM vs the equation-by-equation reference of the tests (one step; > 1 means the fast path is faster);
  - share of step time spent waiting for batches from the feature store (target < 5%).
The matmul, CTM and joint steps run in turns, TAM_BENCH_FUSION_REPS (default 5) rounds after a warm-up, so that a
busy or drifting machine affects them alike; the two target ratios are computed within each round (the matmul
rate of the same round) and reported as their median with the spread (min-max) over the rounds.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tam import PAPER_DIMS
from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from tam.models.model import build_model

B, T, D, L, H = 8, 64, 768, 12, 8
REPS = int(os.environ.get("TAM_BENCH_FUSION_REPS", "5"))
THREADS = int(os.environ.get("TAM_BENCH_FUSION_THREADS", "2"))


def _inputs():
    g = torch.Generator().manual_seed(0)
    x = {m: torch.randn(B, T, dim, generator=g) for m, dim in PAPER_DIMS.items()}
    return x, torch.ones(B, T, dtype=torch.bool), torch.ones(B, 3, dtype=torch.bool)


def _interleaved(fns: dict, reps: int = REPS) -> dict[str, list[float]]:
    """Time of each step function in each of `reps` rounds, run in turns after one warm-up call each."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def _train_step(model, x, valid, present):
    def step():
        model.zero_grad(set_to_none=True)
        model(x, valid, present).square().sum().backward()
    return step


def ctm_flops() -> float:
    """Matmul FLOPs of one forward pass of CTM at this size (x3 for forward + backward)."""
    M, Lt = 3, T + 1
    tokens = B * M * Lt
    per_layer = (2 * tokens * D * 3 * D  # Eq. (2)
                 + 2 * 2 * B * M * M * H * Lt * Lt * (D // H)  # Eqs. (3)-(4): QKᵀ and AV for all M² pairs
                 + 2 * tokens * 2 * D * D  # Eq. (5)
                 + 2 * 2 * tokens * D * 4 * D)  # FFN
    embed = 2 * B * T * D * sum(PAPER_DIMS.values())
    return L * per_layer + embed + 2 * B * D * 8


def matmul_step(n: int = 2048, reps: int = 5):
    """A step of `reps` dense fp32 n x n matmuls and its FLOPs."""
    a, b = torch.randn(n, n), torch.randn(n, n)

    def step():
        for _ in range(reps):
            a @ b
    return step, 2 * n**3 * reps


def _reference():
    path = Path(__file__).resolve().parents[1] / "tests" / "models" / "test_fusion.py"
    spec = importlib.util.spec_from_file_location("fusion_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.reference_ctm


def data_wait_share() -> tuple[float, float]:
    """Train one epoch at the paper's size from a feature store with DataLoader workers; wait / total time."""
    from tam.demo.worlds.features import CLASSES, WorldSpec, make_world
    from tam.train.loop import fit

    with tempfile.TemporaryDirectory() as tmp:
        store, labels = make_world(tmp, WorldSpec(n_videos=56, min_segments=64, max_segments=120, test_fraction=0))
        cfg = RunConfig(model=ModelConfig(), data=DataConfig(store=str(store), labels=str(labels),
                                                             classes=list(CLASSES), val_fraction=0.15),
                        optim=OptimConfig(epochs=1, batch_size=B), train=TrainConfig(num_workers=2, progress=False))
        t0 = time.perf_counter()
        r = fit(cfg, Path(tmp) / "run", log=lambda s: None)
        return r["data_wait_seconds"], time.perf_counter() - t0


def _verdict(name: str, values: list[float], op: str, target: float) -> str:
    """One line: the median of the rounds, their spread and whether the median meets the target."""
    m = statistics.median(values)
    met = m <= target if op == "<=" else m >= target
    return (f"  {name}: {m:.3f} (median of {len(values)} rounds, spread {min(values):.3f}-{max(values):.3f}); "
            f"target {op} {target}: {'YES' if met else 'NO'}")


def run() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _run()
    finally:
        torch.set_num_threads(threads)


def _run() -> dict:
    torch.manual_seed(0)
    x, valid, present = _inputs()
    cfg = dict(d=D, layers=L, heads=H, T=T, dropout=0.0)
    ctm = build_model(ModelConfig(fusion="ctm", **cfg), PAPER_DIMS, 8)
    joint = build_model(ModelConfig(fusion="joint", **cfg), PAPER_DIMS, 8)
    reference = _reference()

    def ref_step():
        ctm.zero_grad(set_to_none=True)
        reference(ctm.fusion, x, valid, present)[:, 0].square().sum().backward()

    mm, mm_flops = matmul_step()
    t = _interleaved({"matmul": mm, "ctm": _train_step(ctm, x, valid, present),
                      "joint": _train_step(joint, x, valid, present)})
    t0 = time.perf_counter()
    ref_step()
    t_ref = time.perf_counter() - t0
    ratio = [c / j for c, j in zip(t["ctm"], t["joint"], strict=True)]
    frac = [3 * ctm_flops() / c / (mm_flops / m) for c, m in zip(t["ctm"], t["matmul"], strict=True)]
    med = statistics.median
    wait, total = data_wait_share()
    out = {
        "threads": THREADS, "repetitions": REPS,
        "ctm_step_s": med(t["ctm"]), "joint_step_s": med(t["joint"]), "reference_step_s": t_ref,
        "fast_vs_reference_speedup": t_ref / med(t["ctm"]),
        "ctm_over_joint_time": med(ratio), "ctm_over_joint_min": min(ratio), "ctm_over_joint_max": max(ratio),
        "matmul_fp32_gflops": med([mm_flops / m for m in t["matmul"]]) / 1e9,
        "ctm_step_gflops": 3 * ctm_flops() / med(t["ctm"]) / 1e9,
        "ctm_flop_fraction_of_matmul": med(frac), "ctm_flop_fraction_min": min(frac),
        "ctm_flop_fraction_max": max(frac),
        "data_wait_share": wait / total,
    }
    for k, v in out.items():
        print(f"  {k:<30} {v:.4g}")
    print(_verdict("CTM / joint time", ratio, "<=", 1.15))
    print(_verdict("CTM / matmul FLOP rate", frac, ">=", 0.85))
    return out


if __name__ == "__main__":
    run()
