"""Measure the regularisation options on the feature-level synthetic world (docs/training.md, "Regularisation
and schedules"): each option alone against the paper's setting, then the recipe, with the same seeds.

    OMP_NUM_THREADS=1 python -m bench.regularisation [--videos 800] [--epochs 8] [--seeds 0 1 2] [--arms a b]
        [--jobs 1] [--out bench/results/regularisation.json]

The table of docs/training.md: `--videos 400 --epochs 8 --jobs 2`, and `--videos 400 --epochs 20 --arms paper all`.

Demo size by default (tam demo: 800 videos of 6-16 segments, d = 64, L = 2, T = 16, AdamW lr 1e-3, batch 16,
8 epochs, dropout 0.1). For every arm and seed: training accuracy (on up to 64 training videos, whole videos,
eval mode, at the selected epoch), validation and test accuracy of the selected checkpoint, seconds. The table
gives means with 95% t-intervals over seeds and the paired test-accuracy difference against `paper`.
Not a `make bench` figure (minutes, not seconds): it is run by hand and its table goes into docs/training.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent


def arms() -> dict[str, dict]:
    """Overrides (section -> field -> value) of each arm against the paper's setting."""
    return {
        "paper": {},
        "crop_jitter": {"augment": {"crop_min_fraction": 0.5}},
        "token_dropout": {"augment": {"token_dropout": 0.1}},
        "modality_dropout": {"augment": {"modality_dropout": 0.2}},
        "noise": {"model": {"noise": 0.1}},
        "mixup": {"augment": {"mixup_alpha": 0.2}},
        "label_smoothing": {"augment": {"label_smoothing": 0.1}},
        "drop_path": {"model": {"drop_path": 0.1}},
        "warmup_cosine": {"optim": {"schedule": "cosine", "warmup_epochs": 1.0}},
        "ema": {"train": {"ema_decay": 0.99}},
        "early_stop": {"train": {"patience": 3}},
        "all": {"model": {"drop_path": 0.1, "noise": 0.1},
                "augment": {"crop_min_fraction": 0.5, "token_dropout": 0.1, "modality_dropout": 0.2,
                            "mixup_alpha": 0.2, "label_smoothing": 0.1},
                "optim": {"schedule": "cosine", "warmup_epochs": 1.0}, "train": {"ema_decay": 0.99}},
    }


def paper_config(store: Path, labels: Path, seed: int, epochs: int):
    """The demo's config with every new option at the paper's value (all off)."""
    from tam.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import CLASSES

    return RunConfig(
        model=ModelConfig(fusion="ctm", d=64, layers=2, heads=4, T=16, dropout=0.1, drop_path=0.0, noise=0.0),
        data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
        optim=OptimConfig(optimizer="adamw", lr=1e-3, batch_size=16, epochs=epochs, schedule="step",
                          warmup_epochs=0.0),
        train=TrainConfig(seed=seed, num_workers=0, device="cpu", progress=False, threads=1, patience=0,
                          ema_decay=0.0),
        augment=AugmentConfig(crop_min_fraction=1.0, token_dropout=0.0, modality_dropout=0.0, mixup_alpha=0.0,
                              label_smoothing=0.0)).validate()


def with_overrides(cfg, overrides: dict):
    return replace(cfg, **{sec: replace(getattr(cfg, sec), **kv) for sec, kv in overrides.items()}).validate()


def one(args) -> dict:
    """Train one (arm, seed); returns its figures."""
    cfg, run_dir, arm, seed = args
    import torch

    from tam.train.loop import fit

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    r = fit(cfg, run_dir, log=lambda s: None)
    rows = list(csv.DictReader((Path(run_dir) / "metrics.csv").open()))
    best = rows[r["best_epoch"]]
    return {"arm": arm, "seed": seed, "train": float(best.get("train_accuracy", "nan")),
            "val": r["val"]["accuracy"], "test": r["test"]["accuracy"], "epochs": len(rows),
            "best_epoch": r["best_epoch"] + 1, "seconds": time.perf_counter() - t0}


def ci(x: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval."""
    if len(x) < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def table(results: list[dict]) -> str:
    by = {}
    for r in results:
        by.setdefault(r["arm"], {})[r["seed"]] = r
    base = by.get("paper", {})
    lines = ["| arm | train acc | val acc | test acc | test − paper (paired) | gap train − test | epochs | s/run |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, runs in by.items():
        seeds = sorted(runs)
        col = {k: np.array([runs[s][k] for s in seeds]) for k in ("train", "val", "test", "epochs", "seconds")}
        cells = [f"{m:.3f} ± {h:.3f}" for m, h in (ci(col[k]) for k in ("train", "val", "test"))]
        shared = [s for s in seeds if s in base]
        if arm != "paper" and len(shared) >= 2:
            diff = np.array([runs[s]["test"] - base[s]["test"] for s in shared])
            m, h = ci(diff)
            p = stats.ttest_rel([runs[s]["test"] for s in shared], [base[s]["test"] for s in shared]).pvalue
            cells.append(f"{m:+.3f} ± {h:.3f} (p {p:.2f})")
        else:
            cells.append("—")
        gm, gh = ci(col["train"] - col["test"])
        cells += [f"{gm:.3f} ± {gh:.3f}", f"{col['epochs'].mean():.1f}", f"{col['seconds'].mean():.0f}"]
        lines.append(f"| {arm} (n={len(seeds)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=800)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(arms()))
    ap.add_argument("--extra", default="", help='JSON of further arms, e.g. {"recipe": {"model": {"noise": 0.1}}}')
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--work", default="/tmp/tam-bench-regularisation")
    ap.add_argument("--out", default=str(HERE / "results" / "regularisation.json"))
    a = ap.parse_args(argv)
    from tam.demo.worlds.features import WorldSpec, make_world

    work = Path(a.work)
    store, labels = make_world(work / f"world{a.videos}", WorldSpec(n_videos=a.videos, min_segments=6,
                                                                    max_segments=16, seed=0))
    table_arms = {**arms(), **(json.loads(a.extra) if a.extra else {})}
    names = a.arms + [k for k in table_arms if k not in arms() and k not in a.arms]
    jobs = [(with_overrides(paper_config(store, labels, s, a.epochs), table_arms[n]),
             work / f"runs-{a.videos}-{a.epochs}" / f"{n}-seed{s}", n, s) for n in names for s in a.seeds]
    out = Path(a.out)
    done = json.loads(out.read_text()) if out.is_file() else []
    have = {(r["arm"], r["seed"], r.get("videos"), r.get("epochs_max")) for r in done}
    todo = [j for j in jobs if (j[2], j[3], a.videos, a.epochs) not in have]
    print(f"{len(jobs)} runs ({len(todo)} to do): arms {names}, seeds {a.seeds}", flush=True)
    if a.jobs > 1:
        from multiprocessing import get_context

        it = get_context("spawn").Pool(a.jobs).imap_unordered(one, todo)
    else:
        it = map(one, todo)
    for r in it:
        r.update(videos=a.videos, epochs_max=a.epochs)
        done.append(r)
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(done, indent=1) + "\n")  # resumable: finished runs are kept
        print(f"  {r['arm']:<18} seed {r['seed']}  train {r['train']:.3f}  val {r['val']:.3f}  "
              f"test {r['test']:.3f}  ({r['seconds']:.0f} s)", flush=True)
    rows = [r for r in done if r.get("videos") == a.videos and r.get("epochs_max") == a.epochs and r["arm"] in names
            and r["seed"] in a.seeds]
    print(f"\nCTM d=64 L=2 T=16, {a.videos} videos, {a.epochs} epochs, seeds {a.seeds} "
          "(mean ± 95% CI over seeds):\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
