"""Evaluate a trained run directory on any labels table of a matching feature store."""

from __future__ import annotations

from pathlib import Path

import torch

from tam.datasets.labels import SPLITS, read_labels
from tam.errors import TamError
from tam.features.clips import ClipDataset
from tam.features.store import FeatureStore, Manifest
from tam.train.checkpoint import load_model
from tam.train.distributed import Dist
from tam.train.loop import evaluate, no_overlap, predict


def evaluate_run(run_dir: str, store_path: str, labels_path: str, split: str | None = None) -> dict:
    """Metrics of `run_dir`'s best model on the rows of `labels_path` (optionally one split)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_model(run_dir, "best", device)  # checked: description, header, then weights
    if not isinstance(meta.get("features"), dict):
        raise TamError(f"{Path(run_dir) / 'best.json'}: records no feature manifest; cannot check the store")
    store = FeatureStore.open(store_path)
    store.check_matches(Manifest.from_json(meta["features"]), f"the model in {run_dir}")
    labels = read_labels(labels_path, meta["task"], meta["classes"] or None)
    if split:
        labels = _split(labels, split, labels_path)
    store.require_valid(labels.videos)  # a damaged entry is named now, not a traceback mid-way
    have = set(store.videos())
    keep = [i for i, v in enumerate(labels.videos) if v in have]
    if not keep:
        raise TamError(no_overlap(labels_path, labels.videos, store_path, have))
    skipped = len(labels) - len(keep)
    labels = labels.take(keep)
    cfg = meta["model"]
    ds = ClipDataset(store, labels.videos, labels.targets, cfg["modalities"], cfg["T"], train=False)
    pred = predict(model, ds, device, Dist(), 32, meta.get("target_mean", []),
                   meta.get("target_std", []), meta["task"])
    return {"n": len(labels), "skipped": skipped, "metrics": evaluate(meta["task"], labels.targets, pred),
            "random_init_features": store.manifest.random_init}


def _split(labels, split: str, labels_path: str):
    """The rows of one split; an unknown or empty split is named with the splits the file has."""
    have = sorted(set(labels.split), key=SPLITS.index)
    if split not in SPLITS:
        raise TamError(f"--split {split}: unknown split (choose from {', '.join(SPLITS)}; {labels_path} has "
                       f"{', '.join(have)})")
    if split not in have:
        raise TamError(f"{labels_path}: no rows of split {split} (it has {', '.join(have)}; rows without a split "
                       "are train)")
    return labels.subset(split)


def format_metrics(r: dict, run_dir: str, split: str | None) -> str:
    """What `tam evaluate` prints: the rows scored, the metrics, and whether the features are real."""
    lines = [f"{run_dir} on {'split ' + split if split else 'every row'}: {r['n']} videos scored, "
             f"{r['skipped']} without features skipped"]
    lines += [f"  {k:<16} {v:.4f}" if isinstance(v, float) else f"  {k:<16} {v}" for k, v in r["metrics"].items()]
    if r["random_init_features"]:
        lines.append("Features come from randomly initialised encoders: these numbers are not real results.")
    return "\n".join(lines)

