"""The learning curves of the worlds with power (issue 13): `tam experiment run` + `collect` on a grid of
configs/experiments/, reporting each claim's verdict and the paired difference with its 95% interval.

`TAM_BENCH_EXPERIMENT` names the grid (default `timing`); `TAM_BENCH_EXPERIMENT_JOBS` the parallel runs (default
2). The full grids take hours on 2 cores (docs/experiments.md); this is a benchmark, never a test. Finished runs
are kept in the grid's `out` folder, so a second call only collects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run() -> dict[str, float | str]:
    name = os.environ.get("TAM_BENCH_EXPERIMENT", "timing")
    jobs = os.environ.get("TAM_BENCH_EXPERIMENT_JOBS", "2")
    grid = ROOT / "configs" / "experiments" / f"{name}.yaml"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tam", "experiment", "run", str(grid), "--jobs", jobs], cwd=ROOT, env=env,
                   check=False)
    seconds = time.perf_counter() - t0
    from tam.experiment.collect import claim_rows, collect
    from tam.experiment.grid import load_grid

    os.chdir(ROOT)
    _, c, paths = collect(load_grid(grid))
    out: dict[str, float | str] = {"grid": name, "run_seconds": round(seconds, 1), "report": str(paths["html"]),
                                   "runs_finished": sum(o.status == "done" for o in c.outcomes),
                                   "runs_failed": sum(o.status == "failed" for o in c.outcomes)}
    table, _ = claim_rows(c)
    for row in table.rows:
        key = f"{row[0]} ({row[1]}, n={row[2]})".replace(" ", "_")
        out[key] = f"{row[-1]}: diff {row[5]}, t p {row[6]}, wilcoxon p {row[7]}"
    return out
