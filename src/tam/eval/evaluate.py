"""Evaluate a trained run directory on any labels table of a matching feature store."""

from __future__ import annotations

from pathlib import Path

import torch

from tam.datasets.labels import read_labels
from tam.errors import TamError
from tam.features.clips import ClipDataset
from tam.features.store import FeatureStore, Manifest
from tam.train.checkpoint import load_model
from tam.train.distributed import Dist
from tam.train.loop import evaluate, predict


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
        labels = labels.subset(split)
    store.require_valid(labels.videos)  # a damaged entry is named now, not a traceback mid-way
    have = set(store.videos())
    keep = [i for i, v in enumerate(labels.videos) if v in have]
    skipped = len(labels) - len(keep)
    labels = labels.take(keep)
    if not len(labels):
        raise TamError(f"{labels_path}: no rows with features in {store_path}")
    cfg = meta["model"]
    ds = ClipDataset(store, labels.videos, labels.targets, cfg["modalities"], cfg["T"], train=False)
    pred = predict(model, ds, device, Dist(), 32, meta.get("target_mean", []),
                   meta.get("target_std", []), meta["task"])
    return {"n": len(labels), "skipped": skipped, "metrics": evaluate(meta["task"], labels.targets, pred)}

