"""Fusion benchmark at the paper's size (d=768, L=12, 8 heads, T=64, M=3, batch 8), forward + backward.

Measured side by side in one run, with TAM_BENCH_FUSION_THREADS (default 2) torch threads:
  - CTM vs joint attention (same attention FLOPs; target: CTM <= 1.15x its time);
  - achieved FLOP rate of a CTM training step / this machine's dense fp32 matmul rate (target >= 0.85);
  - fast CTM vs the equation-by-equation reference of the tests (one step; > 1 means the fast path is faster);
  - share of step time spent waiting for batches from the feature store (target < 5%).
With TAM_BENCH_FUSION_COMPILE=1 the rounds also time compiled copies of both models (`torch.compile` of each fusion
layer, fullgraph, dynamic=False; minutes of compilation first) and report them beside the eager rows: compiled CTM /
eager joint, compiled / compiled, compiled / eager CTM, and the compiled outputs' and gradients' largest differences
from the eager ones. The targets are read on the eager rows (the plain path, what `tam train` runs).
The matmul, CTM and joint steps run in turns, TAM_BENCH_FUSION_REPS (default 5) rounds after a warm-up, so that a
busy or drifting machine affects them alike; the two target ratios are computed within each round (the matmul
rate of the same round) and reported as their median with the spread (min-max) over the rounds.
"""

from __future__ import annotations

import copy
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
COMPILE = os.environ.get("TAM_BENCH_FUSION_COMPILE", "0") == "1"


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


def compiled(model):
    """A copy of `model` whose fusion layers run `torch.compile`d (one graph per layer, fullgraph, dynamic=False);
    the first step compiles (minutes)."""
    c = copy.deepcopy(model)
    for layer in getattr(c.fusion, "layers", None) or c.fusion.blocks:
        layer.compile(fullgraph=True, dynamic=False)
    return c


def differences(model, other, x, valid, present) -> tuple[float, float]:
    """Largest |output difference| and largest gradient difference relative to the gradient's largest entry."""
    outs, grads = [], []
    for m in (model, other):
        m.zero_grad(set_to_none=True)
        out = m(x, valid, present)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([p.grad for p in m.parameters() if p.grad is not None])
    g = max(((a - b).abs().max() / a.abs().max().clamp(min=1e-30)).item() for a, b in zip(*grads, strict=True))
    return (outs[0] - outs[1]).abs().max().item(), g


def _compiled_rows(ctm, joint, x, valid, present) -> dict:
    """The compiled copies of both models, their compile + first step time and differences from the eager ones."""
    rows, steps = {}, {}
    for name, model in (("ctm", ctm), ("joint", joint)):
        c = compiled(model)
        steps[f"{name}_compiled"] = _train_step(c, x, valid, present)
        t0 = time.perf_counter()
        steps[f"{name}_compiled"]()
        rows[f"{name}_compile_s"] = time.perf_counter() - t0
        rows[f"{name}_compiled_out_diff"], rows[f"{name}_compiled_grad_rel_diff"] = differences(model, c, x, valid,
                                                                                             present)
    return {"rows": rows, "steps": steps}


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
    comp = _compiled_rows(ctm, joint, x, valid, present) if COMPILE else {"rows": {}, "steps": {}}
    t = _interleaved({"matmul": mm, "ctm": _train_step(ctm, x, valid, present),
                      "joint": _train_step(joint, x, valid, present), **comp["steps"]})
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
    if COMPILE:
        out.update(comp["rows"], **_compiled_ratios(t, mm_flops))
    for k, v in out.items():
        print(f"  {k:<30} {v:.4g}")
    print(_verdict("CTM / joint time", ratio, "<=", 1.15))
    print(_verdict("CTM / matmul FLOP rate", frac, ">=", 0.85))
    return out


def _compiled_ratios(t: dict[str, list[float]], mm_flops: float) -> dict[str, float]:
    """Medians and spreads of the compiled rows' ratios, each within its round."""
    out = {"ctm_compiled_step_s": statistics.median(t["ctm_compiled"]),
           "joint_compiled_step_s": statistics.median(t["joint_compiled"])}
    pairs = {"ctm_compiled_over_joint": ("ctm_compiled", "joint"),
             "ctm_compiled_over_joint_compiled": ("ctm_compiled", "joint_compiled"),
             "ctm_compiled_over_ctm": ("ctm_compiled", "ctm"), "joint_compiled_over_joint": ("joint_compiled", "joint")}
    for key, (a, b) in pairs.items():
        r = [p / q for p, q in zip(t[a], t[b], strict=True)]
        out.update({key: statistics.median(r), f"{key}_min": min(r), f"{key}_max": max(r)})
    frac = [3 * ctm_flops() / c / (mm_flops / m) for c, m in zip(t["ctm_compiled"], t["matmul"], strict=True)]
    out["ctm_compiled_flop_fraction"] = statistics.median(frac)
    return out


if __name__ == "__main__":
    run()
