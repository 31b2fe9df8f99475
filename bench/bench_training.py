"""Training throughput with the default regularisation on, against the training step before it existed.

Same model (CTM, d = 64, L = 2, T = 16, batch 16: the demo's size), same data (a feature-level synthetic
world), same loop (`tam.train.loop.Run.train_epoch`), measured side by side in one run:
  - `before`: the paper's setting on the path of the code before per-sample random streams: dropout from
    the global RNG (batches without per-sample seeds), batches padded to their longest clip, no augmentation;
  - `paper`: the paper's setting on today's path (per-sample dropout masks, batches padded to T);
  - `default`: the shipped defaults of every regularisation option (RunConfig()).
Figures: clips/s of each (wall clock) and the ratios `paper_over_before`, `default_over_before` (target >= 0.9:
at most a 10% drop) of clips per CPU second of this process (one torch thread, no loader workers: on a shared
machine the CPU time of the step is steadier than its wall time). Each figure is the best of
TAM_BENCH_TRAINING_EPOCHS (default 5) epochs, the arms run in turns so a busy machine hits them alike.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

EPOCHS = int(os.environ.get("TAM_BENCH_TRAINING_EPOCHS", "5"))


class _NoExtras(Dataset):
    """Training items without their extras (per-sample seed, augmentation): the path before them."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, item):
        return self.ds[item][:4]


def _configs(store: Path, labels: Path):
    from tam.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import CLASSES

    default = RunConfig(model=ModelConfig(d=64, layers=2, heads=4, T=16),
                        data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
                        optim=OptimConfig(lr=1e-3, batch_size=16, epochs=EPOCHS),
                        train=TrainConfig(num_workers=0, device="cpu", progress=False, threads=1,
                                          train_eval_videos=0)).validate()
    paper = replace(default, model=replace(default.model, drop_path=0.0, noise=0.0),
                    optim=replace(default.optim, schedule="step", warmup_epochs=0.0),
                    train=replace(default.train, ema_decay=0.0),
                    augment=AugmentConfig(crop_min_fraction=1.0, token_dropout=0.0, modality_dropout=0.0,
                                          mixup_alpha=0.0, label_smoothing=0.0)).validate()
    return default, paper


def _run(cfg, run_dir: Path, before: bool = False):
    from tam.features.clips import collate
    from tam.train import distributed
    from tam.train.loop import Run, prepare_data

    run = Run(cfg, run_dir, distributed.Dist(), torch.device("cpu"), prepare_data(cfg))
    if before:
        run.loader = DataLoader(_NoExtras(run.train_ds), batch_sampler=run.sampler, collate_fn=collate)
    return run


def run() -> dict[str, float]:
    from tam.demo.worlds.features import WorldSpec, make_world

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store, labels = make_world(tmp / "world", WorldSpec(n_videos=240, min_segments=6, max_segments=24))
        default, paper = _configs(store, labels)
        runs = {"before": _run(paper, tmp / "a", before=True), "paper": _run(paper, tmp / "b"),
                "default": _run(default, tmp / "c")}
        n = len(runs["default"].sampler) * default.optim.batch_size
        for r in runs.values():  # warm-up
            r.train_epoch(0)
        wall, cpu = {k: float("inf") for k in runs}, {k: float("inf") for k in runs}
        for epoch in range(1, EPOCHS + 1):
            for k, r in runs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                r.train_epoch(epoch)
                wall[k] = min(wall[k], time.perf_counter() - t0)
                cpu[k] = min(cpu[k], time.process_time() - c0)
    out = {f"{k}_clips_per_s": n / t for k, t in wall.items()}
    out["paper_over_before"] = cpu["before"] / cpu["paper"]
    out["default_over_before"] = cpu["before"] / cpu["default"]
    out["default_over_before_wall"] = wall["before"] / wall["default"]
    out["default_over_before_target"] = 0.9
    return out
