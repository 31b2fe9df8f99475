"""Seeds as one batched process (tam.train.multiseed) against one process per seed, side by side, and the
`timing.yaml` grid's wall time extrapolated from the CPU seconds of its processes.

- `steps`: the training step alone (forward + backward of K = 5 models, K separate steps against one vmap step,
  d = 32 and 64, batch 32, 16 and 8);
- `epochs`: whole training epochs of a cell's five runs (data, loss, backward, optimiser), each run's own epoch in
  turn against one vmap epoch, CPU seconds: the points `multiseed.VMAP_WORK` is set from;
- `processes`: one cell of configs/experiments/timing.yaml (its real settings: d = 32, L = 2, 4 heads, batch 32;
  labelled videos `TAM_BENCH_MULTISEED_LABELLED`, default all; fusion `TAM_BENCH_MULTISEED_FUSION`, default ctm;
  `TAM_BENCH_MULTISEED_EPOCHS`, default 3, instead of the grid's 25), seeds 0-4, 1 torch thread each: `python -m
  tam train` once per seed, one after another, then one group process for the five as the grid runs it; both wall
  times, their ratio and the largest difference of the per-seed test metrics;
- `grid_estimate`: the grid's processes as `tam experiment run` forms and orders them (`processes`), each run at
  EPOCHS epochs with the CPU seconds of each phase (`phases`: process start and imports, the store, normalisation
  statistics, training steps, per-epoch validation, test scoring, the linear baseline, files written), extrapolated
  to 25 epochs (per-epoch phases x 25 / EPOCHS, the rest once) and scheduled on 2 jobs in the runner's order. An
  extrapolation from CPU seconds (it assumes 2 idle cores), not a run of the grid (target <= 15 min); run the grid
  whole with `TAM_BENCH_EXPERIMENT_FRESH=1 python -m bench experiment`. `TAM_BENCH_MULTISEED_PARALLEL` (default 2)
  processes are measured at a time.

The timing world (3,000 training videos) is made if missing. `python bench/bench_multiseed.py --phases GROUP.json
OUT.json` runs one group file with its phases recorded.
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
EPOCHS = int(os.environ.get("TAM_BENCH_MULTISEED_EPOCHS", "3"))
GRID_EPOCHS, GRID_JOBS, GRID_TARGET_MIN = 25, 2, 15
PARALLEL = int(os.environ.get("TAM_BENCH_MULTISEED_PARALLEL", str(GRID_JOBS)))  # processes measured at a time


def _cell(out: Path, fusion: str | None = None, labelled: str | None = None) -> list[dict]:
    """The cell's runs as {config, overrides, run_dir}, labels subsampled as the grid does, epochs shortened."""
    grid = _grid()
    fusion = fusion or os.environ.get("TAM_BENCH_MULTISEED_FUSION", "ctm")
    labelled = labelled or os.environ.get("TAM_BENCH_MULTISEED_LABELLED", "all")
    return _entries([r for r in grid.runs if r.values["fusion"] == fusion and str(r.values["labelled"]) == labelled],
                    out, lambda r: f"seed{r.seed}")


def _grid():
    from tam.experiment.grid import load_grid
    from tam.experiment.run import make_world

    os.chdir(ROOT)
    grid = load_grid(ROOT / "configs" / "experiments" / "timing.yaml")
    make_world(grid)
    return grid


def _entries(runs: list, out: Path, name=lambda r: r.name, epochs: int | None = None) -> list[dict]:
    """Grid runs as group-file entries {config, overrides, run_dir} under `out`, labels subsampled as the grid does,
    `epochs` (default EPOCHS) instead of the grid's."""
    from tam.experiment.grid import subsample_labels

    group = []
    for r in runs:
        run_dir = out / name(r)
        drop = ("optim.epochs=",) if r.labelled is None else ("data.labels=", "optim.epochs=")  # None: all labels
        overrides = [o for o in r.overrides if not o.startswith(drop)]
        overrides.append(f"optim.epochs={epochs or EPOCHS}")
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


def _group(group: list[dict], tmp: Path) -> float:
    """Wall time of one `python -m tam.train.multiseed` process for the group, as `tam experiment run` runs it."""
    Path(tmp, "group.json").write_text(json.dumps({"runs": group, "batched": None}))
    return _timed(["-m", "tam.train.multiseed", str(Path(tmp, "group.json"))])


def processes() -> dict[str, float]:
    """The cell's five seeds as five processes, then as one group process; the per-seed test metrics compared."""
    with tempfile.TemporaryDirectory() as tmp:
        alone = _cell(Path(tmp) / "alone")
        separate = sum(_timed(["-m", "tam", "train", *([] if g["config"] is None else ["--config", g["config"]]),
                               "--run-dir", g["run_dir"], *[a for o in g["overrides"] for a in ("--set", o)]])
                       for g in alone)
        group = _cell(Path(tmp) / "group")
        one = _group(group, Path(tmp))
        diff = max(abs(a[k] - b[k]) for a, b in zip(_test_metrics(alone), _test_metrics(group), strict=True)
                   for k in a if a[k] is not None)
    return {"separate_processes_s": round(separate, 1), "one_group_process_s": round(one, 1),
            "group_speedup": round(separate / one, 2), "max_test_metric_difference": diff}


PER_EPOCH = ("train steps", "per-epoch validation", "per-epoch writing", "per-epoch other")


def phases(group_file: str, out_file: str) -> None:
    """Run one group file (`python -m tam.train.multiseed`) with the CPU seconds of each phase recorded, exclusive
    (a phase inside another counts once), into `out_file` as JSON; `imports` is the process's CPU time before it."""
    import resource

    from tam.eval import linear
    from tam.train import loop, multiseed

    acc, stack, mark = {"imports": time.process_time()}, ["other"], [time.process_time()]
    where = {"epoch": False}

    def charge():
        now = time.process_time()
        acc[stack[-1]] = acc.get(stack[-1], 0.0) + now - mark[0]
        mark[0] = now

    def wrap(owner, name, phase):
        f = getattr(owner, name)

        def timed(*a, **k):
            charge()
            stack.append(phase if isinstance(phase, str) else phase())
            try:
                return f(*a, **k)
            finally:
                charge()
                stack.pop()
        setattr(owner, name, timed)

    def epoch(f):
        def inside(*a, **k):
            where["epoch"] = True
            try:
                return f(*a, **k)
            finally:
                where["epoch"] = False
        return inside

    multiseed.end_epoch = epoch(multiseed.end_epoch)
    wrap(multiseed, "shared_data", "reading the store and labels")
    wrap(loop, "compute_stats", "normalisation statistics")
    wrap(linear, "pooled_features", "linear baseline: pooled features")
    wrap(linear, "_fit", "linear baseline: fit")
    wrap(multiseed, "_own_epoch", "train steps")
    wrap(multiseed.Batched, "train_epoch", "train steps")
    wrap(multiseed.Batched, "sync", "per-epoch other")
    wrap(loop.Run, "eval_split", lambda: "per-epoch validation" if where["epoch"] else "final val + test scoring")
    for name in ("save_model", "save_state", "_write_metrics", "write_json", "write_text"):
        wrap(loop, name, lambda: "per-epoch writing" if where["epoch"] else "final writing")
    wrap(multiseed, "open_run", "opening runs (models, other)")
    wrap(multiseed, "end_epoch", "per-epoch other")
    wrap(multiseed, "finish", "finishing (curves, results, other)")
    mark[0] = time.process_time()
    multiseed.main([group_file])
    charge()
    acc["total"] = time.process_time()
    acc["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out_file).write_text(json.dumps({k: round(v, 2) for k, v in acc.items()}))


def _phased(group: list[dict], tmp: Path) -> dict[str, float]:
    """One group process with its phases' CPU seconds (`phases`), as `tam experiment run` starts it."""
    Path(tmp).mkdir(parents=True, exist_ok=True)
    Path(tmp, "group.json").write_text(json.dumps({"runs": group, "batched": None}))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, __file__, "--phases", str(Path(tmp, "group.json")), str(Path(tmp, "p.json"))],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(Path(tmp, "p.json").read_text())


def schedule(costs: list[float], jobs: int) -> float:
    """The finishing time of `costs` started in this order on `jobs` workers, each taking the next when it is free
    (the runner's thread pool)."""
    free = [0.0] * jobs
    for c in costs:
        free[free.index(min(free))] += c
    return max(free)


def grid_estimate() -> dict[str, float]:
    """The grid's processes as `tam experiment run` forms and orders them (`processes`), each run at EPOCHS epochs
    with its phases' CPU seconds; each extrapolated to the grid's epochs (the per-epoch phases x GRID_EPOCHS /
    EPOCHS, the rest once), then scheduled in the runner's order on GRID_JOBS cores. CPU seconds, so a loaded
    machine inflates it less than wall time would; it assumes GRID_JOBS idle cores."""
    from concurrent.futures import ThreadPoolExecutor

    from tam.experiment.grid import seed_groups
    from tam.experiment.run import _group_name, processes

    grid = _grid()
    out: dict[str, float] = {}
    costs, totals = [], {}
    procs = processes(seed_groups(grid.runs, grid.batch))
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(PARALLEL) as pool:  # CPU seconds: side by side
        measured = pool.map(lambda i: _phased(_entries(procs[i], Path(tmp) / str(i)), Path(tmp) / str(i)),
                            range(len(procs)))
        for runs, p in zip(procs, measured, strict=True):
            name = _group_name(runs)
            per_epoch = sum(p.get(k, 0.0) for k in PER_EPOCH)
            costs.append(p["total"] + per_epoch * (GRID_EPOCHS / EPOCHS - 1))
            out[f"{name}_cpu_s_at_{GRID_EPOCHS}ep"] = round(costs[-1], 1)
            for k, v in p.items():
                if k not in ("total", "max_rss_mb"):
                    totals[k] = totals.get(k, 0.0) + v * (GRID_EPOCHS / EPOCHS if k in PER_EPOCH else 1)
    whole = sum(costs)
    out |= {f"phase_{k}_cpu_s".replace(" ", "_"): round(v, 1) for k, v in sorted(totals.items(), key=lambda x: -x[1])}
    minutes = schedule(costs, GRID_JOBS) / 60
    out |= {"grid_cpu_s_extrapolated": round(whole, 1), "grid_minutes_extrapolated": round(minutes, 1),
            "grid_minutes_if_balanced": round(whole / GRID_JOBS / 60, 1)}
    print(f"  timing.yaml grid: {minutes:.1f} min extrapolated ({len(costs)} processes at {EPOCHS} epochs, per-epoch "
          f"phases x {GRID_EPOCHS / EPOCHS:g}, {GRID_JOBS} jobs in the runner's order); target <= {GRID_TARGET_MIN} "
          f"min: {'YES' if minutes <= GRID_TARGET_MIN else 'NO'} (an extrapolation, not a run of the grid)")
    return out


def epochs(fusion: str, labelled: str = "1000", reps: int = 2, sets: tuple[str, ...] = ()) -> dict[str, float]:
    """Whole training epochs of a cell's K = 5 runs (data, loss, backward, optimiser): each run's own epoch in turn
    against one vmap epoch (`Batched`), interleaved in one process after a first epoch of each, CPU seconds."""
    import torch

    from tam.config import load_config
    from tam.train import multiseed
    from tam.train.loop import open_run

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        group = _cell(Path(tmp), fusion, labelled)
        cfgs = [load_config(g["config"], [*g["overrides"], *sets]) for g in group]
        runs = [open_run(c, g["run_dir"], lambda _: None, d)[0]
                for c, g, d in zip(cfgs, group, multiseed.shared_data(cfgs), strict=True)]
        stacked, rngs, cpu = multiseed.Batched(runs), [torch.get_rng_state()] * len(runs), {"own": 0.0, "vmap": 0.0}
        for epoch in range(reps + 1):
            t0 = time.process_time()
            for k, r in enumerate(runs):
                multiseed._own_epoch(r, epoch, rngs, k)
            t1 = time.process_time()
            stacked.train_epoch(epoch)
            if epoch:
                cpu["own"] += t1 - t0
                cpu["vmap"] += time.process_time() - t1
    key = f"epochs_{fusion}_{labelled}" + "".join(f"_{x}" for x in sets)
    return {f"{key}_own_cpu_s": round(cpu["own"], 2), f"{key}_vmap_cpu_s": round(cpu["vmap"], 2),
            f"{key}_vmap_speedup": round(cpu["own"] / cpu["vmap"], 2)}


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
        for B in (32, 16, 8):
            out |= {k.replace("step_", f"step_b{B}_"): v for k, v in steps(d, B=B).items()}
    for fusion in ("ctm", "joint", "concat", "inner", "divide"):
        out |= epochs(fusion)
    out |= processes()
    print(f"  cell of 5 seeds: {out['separate_processes_s']} s as 5 processes, {out['one_group_process_s']} s as one "
          f"group ({out['group_speedup']}x); largest test-metric difference {out['max_test_metric_difference']:.2g}")
    return out | grid_estimate()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--phases"]:
        phases(*sys.argv[2:4])
    else:
        print(json.dumps(run(), indent=1))
