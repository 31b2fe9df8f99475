"""`tam tune` at demo size (issue 12 target: 20 trials on 2 cores in under 15 minutes).

The feature-level world of `tam demo --features-only` at its default size (800 videos, 6..16 segments, features at
the paper's dims), the demo's model (CTM, d = 64, L = 2, 4 heads, T = 16, batch 16) for
`TAM_BENCH_TUNE_EPOCHS` (default 4) epochs, the shipped search space configs/tune/space.yaml (lr, weight decay,
dropout, batch size), `TAM_BENCH_TUNE_TRIALS` (default 20) trials with `--jobs 2` (one torch thread each) and the
command's defaults otherwise (10 random start-up trials, then TPE with median pruning). The wall time counts the
whole study (workers' start-up, trials, plots); the load average before and after says how busy the machine was.
`cpu_seconds` (user + system of this process and the worker processes) does not depend on the load:
`cpu_seconds / 2` is what the study needs on two otherwise idle cores (its two processes never wait for each other).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 15 * 60


def run() -> dict[str, float | str]:
    from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import CLASSES, WorldSpec, make_world
    from tam.train.tune import TuneOptions, load_space, tune

    trials = int(os.environ.get("TAM_BENCH_TUNE_TRIALS", 20))
    epochs = int(os.environ.get("TAM_BENCH_TUNE_EPOCHS", 4))
    with tempfile.TemporaryDirectory() as tmp:
        store, labels = make_world(Path(tmp) / "world", WorldSpec(n_videos=800, min_segments=6, max_segments=16))
        base = RunConfig(model=ModelConfig(fusion="ctm", d=64, layers=2, heads=4, T=16, dropout=0.1),
                         data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
                         optim=OptimConfig(lr=1e-3, batch_size=16, epochs=epochs),
                         train=TrainConfig(num_workers=0, device="cpu", progress=False))
        space = load_space(ROOT / "configs" / "tune" / "space.yaml", base)
        load0 = os.getloadavg()[0]
        cpu0 = _cpu()
        t0 = time.perf_counter()
        s = tune(base, space, TuneOptions(study_dir=str(Path(tmp) / "study"), trials=trials, jobs=2, threads=1),
                 log=lambda line: print("   " + line, flush=True))
        seconds = time.perf_counter() - t0
        cpu = _cpu() - cpu0
    return {"trials": float(s["trials"]), "complete": float(s["states"]["complete"]),
            "pruned": float(s["states"]["pruned"]), "failed": float(s["states"]["fail"]),
            "epochs_per_trial": float(epochs), "seconds": seconds, "seconds_per_trial": seconds / max(1, s["trials"]),
            "target_seconds": float(TARGET_S), "within_target": "yes" if seconds < TARGET_S else "no",
            "cpu_seconds": cpu, "idle_2_core_seconds": cpu / 2,
            "within_target_idle": "yes" if cpu / 2 < TARGET_S else "no",
            "best_val_accuracy": s["best"]["value"] if s["best"] else float("nan"),
            "load_before": load0, "load_after": os.getloadavg()[0], "cores": float(os.cpu_count() or 0)}


def _cpu() -> float:
    """User + system CPU seconds of this process and its finished children (the joined worker processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
