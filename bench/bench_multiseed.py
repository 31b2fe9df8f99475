"""Seeds as one batched process (tam.train.multiseed) against one process per seed, side by side.

One cell of configs/experiments/timing.yaml (fusion `TAM_BENCH_MULTISEED_FUSION`, default ctm; labelled videos
`TAM_BENCH_MULTISEED_LABELLED`, default 1000; `TAM_BENCH_MULTISEED_EPOCHS`, default 5, instead of the grid's 25),
seeds 0-4: first `python -m tam train` once per seed, one after another (what `tam experiment run` did per run),
then one `python -m tam.train.multiseed` process for the five taking each run's own steps in turn, then one taking
one vmap step for all; 1 torch thread each; the three in turn, twice. Reports the wall times, each round's ratios
and the largest difference of the per-seed test metrics against the separate runs; first the training step alone
(K = 5 separate steps against one vmap step, d = 32 and 64, batch 32 and 8). The timing world (3,000 training
videos) is made if missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2, 3, 4]


def _cell(out: Path) -> list[dict]:
    """The cell's runs as {config, overrides, run_dir}, labels subsampled as the grid does, epochs shortened."""
    from tam.experiment.grid import load_grid, subsample_labels
    from tam.experiment.run import make_world

    os.chdir(ROOT)
    grid = load_grid(ROOT / "configs" / "experiments" / "timing.yaml")
    make_world(grid)
    fusion = os.environ.get("TAM_BENCH_MULTISEED_FUSION", "ctm")
    labelled = os.environ.get("TAM_BENCH_MULTISEED_LABELLED", "1000")
    epochs = os.environ.get("TAM_BENCH_MULTISEED_EPOCHS", "5")
    group = []
    for r in grid.runs:
        if r.values["fusion"] != fusion or str(r.values["labelled"]) != labelled:
            continue
        run_dir = out / f"seed{r.seed}"
        overrides = [o for o in r.overrides if not o.startswith(("data.labels=", "optim.epochs="))]
        overrides.append(f"optim.epochs={epochs}")
        if r.labelled is not None:
            run_dir.mkdir(parents=True)
            (run_dir / "labels.csv").write_text(subsample_labels(r.labels, r.labelled, r.seed, r.task, r.classes))
            overrides.append(f"data.labels={run_dir / 'labels.csv'}")
        group.append({"config": r.config, "overrides": overrides, "run_dir": str(run_dir)})
    return group


def _timed(argv: list[str]) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _test_metrics(group: list[dict]) -> list[dict]:
    return [json.loads(Path(g["run_dir"], "results.json").read_text())["test"] for g in group]


def processes(rounds: int = 2) -> dict[str, float]:
    """The cell's five seeds as five processes, as one process (each run's own steps) and as one process (vmap),
    the three in turn, `rounds` times (the machine drifts: each round's ratios are side by side)."""
    times: dict[str, list[float]] = {"separate_processes": [], "one_process_own_steps": [], "one_process_vmap": []}
    diff = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            alone = _cell(Path(tmp) / f"alone{i}")
            times["separate_processes"].append(sum(_timed(
                ["-m", "tam", "train", *([] if g["config"] is None else ["--config", g["config"]]), "--run-dir",
                 g["run_dir"], *[a for o in g["overrides"] for a in ("--set", o)]]) for g in alone))
            for name, batched in (("one_process_own_steps", False), ("one_process_vmap", True)):
                group = _cell(Path(tmp) / f"{name}{i}")
                Path(tmp, "group.json").write_text(json.dumps({"runs": group, "batched": batched}))
                times[name].append(_timed(["-m", "tam.train.multiseed", str(Path(tmp, "group.json"))]))
                diff = max([diff] + [abs(a[k] - b[k]) for a, b in zip(_test_metrics(alone), _test_metrics(group),
                                                                      strict=True) for k in a if a[k] is not None])
    out: dict[str, float] = {"max_test_metric_difference": diff}
    for name, ts in times.items():
        out[f"{name}_s"] = [round(t, 1) for t in ts]
        if name != "separate_processes":
            out[f"{name}_speedup"] = [round(a / t, 2) for a, t in zip(times["separate_processes"], ts, strict=True)]
    return out


def steps(d: int, K: int = 5, B: int = 32, T: int = 16, reps: int = 10) -> dict[str, float]:
    """Forward + backward of K models: K separate steps against one vmap step (seconds per K steps)."""
    import torch

    from tam.config import ModelConfig
    from tam.models.model import build_model
    from tam.models.stochastic import sample_rng
    from tam.train.multiseed import Stacked

    torch.set_num_threads(1)
    dims = {"image": 32, "audio": 32}
    cfg = ModelConfig(modalities=["image", "audio"], d=d, layers=2, heads=4, T=T)
    models = [build_model(cfg, dims, 2).train() for _ in range(K)]
    x = {m: torch.randn(K, B, T, D) for m, D in dims.items()}
    valid, present = torch.ones(K, B, T, dtype=torch.bool), torch.ones(K, B, 2, dtype=torch.bool)
    seeds = torch.arange(K * B)
    stacked = Stacked(models, torch.device("cpu"))

    def separate():
        for k, model in enumerate(models):
            with sample_rng(seeds[k * B:(k + 1) * B]):
                model({m: v[k] for m, v in x.items()}, valid[k], present[k]).square().sum().backward()

    def batched():
        stacked.forward(x, valid, present, seeds).square().sum().backward()

    times = {"separate": 0.0, "vmap": 0.0}
    for _ in range(reps):  # interleaved
        for name, fn in (("separate", separate), ("vmap", batched)):
            t0 = time.perf_counter()
            fn()
            times[name] += (time.perf_counter() - t0) / reps
    return {f"step_d{d}_separate_s": round(times["separate"], 4), f"step_d{d}_vmap_s": round(times["vmap"], 4),
            f"step_d{d}_speedup": round(times["separate"] / times["vmap"], 2)}


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    for d in (32, 64):
        for B in (32, 8):
            out |= {k.replace("step_", f"step_b{B}_"): v for k, v in steps(d, B=B).items()}
    return out | processes()


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
