"""Training-step time at several (torch threads, DataLoader workers) settings, side by side (the thread budget).

Same model (CTM, d = 64, L = 2, T = 16, batch 16: the demo's size), same data (a feature-level synthetic world),
same loop (`tam.train.loop.Run.train_epoch`). Settings: threads 1 / 2 / cores with 0 and 2 workers, and `auto`
(train.threads = 0: max(1, cores // (1 + workers)), the default) with the default 2 workers. The settings run in
turns, TAM_BENCH_TRAIN_EPOCHS (default 2) epochs each after a warm-up epoch, so a busy machine hits them alike;
each figure is the best epoch's seconds per optimiser step. `auto_over_best` = best step / auto's step (1 = auto
picks the fastest setting measured).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

EPOCHS = int(os.environ.get("TAM_BENCH_TRAIN_EPOCHS", "2"))


def _run(store: Path, labels: Path, run_dir: Path, workers: int):
    from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import CLASSES
    from tam.train import distributed
    from tam.train.loop import Run, prepare_data

    cfg = RunConfig(model=ModelConfig(d=64, layers=2, heads=4, T=16),
                    data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
                    optim=OptimConfig(lr=1e-3, batch_size=16, epochs=EPOCHS + 1),
                    train=TrainConfig(num_workers=workers, device="cpu", progress=False, train_eval_videos=0,
                                      linear_baseline=False)).validate()
    return Run(cfg, run_dir, distributed.Dist(), torch.device("cpu"), prepare_data(cfg))


def run() -> dict[str, float | str]:
    from tam.demo.worlds.features import WorldSpec, make_world
    from tam.train.threads import auto_threads, cores

    n_cores = cores()
    settings = {f"t{t}_w{w}": (t, w) for t in sorted({1, 2, n_cores}) for w in (0, 2)}
    settings["auto_w2"] = (auto_threads(2, n_cores), 2)
    before = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store, labels = make_world(tmp / "world", WorldSpec(n_videos=240, min_segments=6, max_segments=24))
        runs = {k: _run(store, labels, tmp / k, w) for k, (_, w) in settings.items()}
        steps = len(next(iter(runs.values())).sampler)
        best = {k: float("inf") for k in runs}
        for epoch in range(EPOCHS + 1):
            for k, r in runs.items():
                torch.set_num_threads(settings[k][0])
                t0 = time.perf_counter()
                r.train_epoch(epoch)
                if epoch:  # epoch 0 warms up (worker start, allocator)
                    best[k] = min(best[k], (time.perf_counter() - t0) / steps)
        del runs
    torch.set_num_threads(before)
    out: dict[str, float | str] = {"cores": float(n_cores), "auto_threads_w2": float(settings["auto_w2"][0])}
    out.update({f"{k}_s_per_step": v for k, v in best.items()})
    out["auto_over_best"] = min(best.values()) / best["auto_w2"]
    return out
