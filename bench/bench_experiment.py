"""The learning curves of the worlds with power (issue 13): `tam experiment run` + `collect` on a grid of
configs/experiments/, reporting each claim's verdict and the paired difference with its 95% interval.

`TAM_BENCH_EXPERIMENT` names the grid (default `timing`); `TAM_BENCH_EXPERIMENT_JOBS` the parallel runs (default
2). The full grids take hours on 2 cores (docs/experiments.md); this is a benchmark, never a test. Finished runs
are kept in the grid's `out` folder, so a second call only collects. `TAM_BENCH_EXPERIMENT_FRESH=1` times the
whole grid from nothing: a copy of the grid whose `out` is a new temporary folder (its world is reused when made),
reporting the wall time of `tam experiment run` and its processes' CPU seconds (issue 22: `timing.yaml` <= 15 min
with 2 jobs on 2 idle cores; about 15-20 min of machine time).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run() -> dict[str, float | str]:
    name = os.environ.get("TAM_BENCH_EXPERIMENT", "timing")
    jobs = os.environ.get("TAM_BENCH_EXPERIMENT_JOBS", "2")
    grid = ROOT / "configs" / "experiments" / f"{name}.yaml"
    if os.environ.get("TAM_BENCH_EXPERIMENT_FRESH") == "1":
        grid = _fresh(grid)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "tam", "experiment", "run", str(grid), "--jobs", jobs], cwd=ROOT, env=env,
                   check=False)
    seconds, cpu = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = cpu.ru_utime + cpu.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    print(f"  {name}: {seconds / 60:.1f} min wall with {jobs} jobs ({cpu_seconds:.0f} CPU-s in its processes)")
    from tam.experiment.collect import claim_rows, collect
    from tam.experiment.grid import load_grid

    os.chdir(ROOT)
    _, c, paths = collect(load_grid(grid))
    out: dict[str, float | str] = {"grid": name, "run_seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
                                   "report": str(paths["html"]),
                                   "runs_finished": sum(o.status == "done" for o in c.outcomes),
                                   "runs_failed": sum(o.status == "failed" for o in c.outcomes)}
    table, _ = claim_rows(c)
    for row in table.rows:
        key = f"{row[0]} ({row[1]}, n={row[2]})".replace(" ", "_")
        out[key] = f"{row[-1]}: diff {row[5]}, t p {row[6]}, wilcoxon p {row[7]}"
    return out


def _fresh(grid: Path) -> Path:
    """A copy of the grid with a new temporary `out` (every run trained; the world folder is kept)."""
    data = yaml.safe_load(grid.read_text(encoding="utf-8"))
    (ROOT / "runs" / "out").mkdir(parents=True, exist_ok=True)  # absent on a clean clone
    data["out"] = tempfile.mkdtemp(prefix=f"bench-{grid.stem}-", dir=ROOT / "runs" / "out")
    copy = Path(data["out"]) / grid.name
    copy.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return copy
