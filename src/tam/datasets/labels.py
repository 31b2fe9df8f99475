"""The labels table every protocol reduces to, and the validation split carved from training data.

CSV (UTF-8, header row), one row per video:

    video,label[,split]                 classification; label = class name
    video,valence,arousal[,split]       regression

`video` is the feature-store id. `split` is train, val or test (empty = train). When no row is `val`,
`carve_validation` moves a seeded, class-stratified fraction of the training rows to validation: model
selection never sees the test rows.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tam.errors import TamError

SPLITS = ("train", "val", "test")


@dataclass
class Labels:
    task: str  # classification | regression
    videos: list[str]
    targets: np.ndarray  # int64 [N] class indices, or float32 [N, 2] (valence, arousal)
    split: list[str]
    classes: list[str] = field(default_factory=list)

    def subset(self, name: str) -> Labels:
        idx = [i for i, s in enumerate(self.split) if s == name]
        return self.take(idx)

    def take(self, idx: list[int]) -> Labels:
        return replace(self, videos=[self.videos[i] for i in idx], targets=self.targets[idx],
                       split=[self.split[i] for i in idx])

    def __len__(self) -> int:
        return len(self.videos)


def read_labels(path: str | Path, task: str, classes: list[str] | None = None) -> Labels:
    """Read a labels CSV; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise TamError(f"{path}: cannot read labels ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise TamError(f"{path}: labels are not UTF-8 text (byte {e.start})") from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as e:
        raise TamError(f"{path}: not a CSV table ({e})") from None
    if not rows:
        raise TamError(f"{path}: empty labels file")
    header = [h.strip() for h in rows[0]]
    need = ["video", "label"] if task == "classification" else ["video", "valence", "arousal"]
    if any(n not in header for n in need):
        raise TamError(f"{path}:1: header must contain {need} (+ optional split) for {task}, got {header}")
    col = {h: i for i, h in enumerate(header)}
    videos, raw, split, lines, seen = [], [], [], [], set()
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise TamError(f"{path}:{lineno}: expected {len(header)} fields, got {len(row)}")
        video = row[col["video"]].strip()
        s = row[col["split"]].strip() if "split" in col else ""
        s = s or "train"
        if s not in SPLITS:
            raise TamError(f"{path}:{lineno}: split must be one of {SPLITS}, got {s!r}")
        if not video:
            raise TamError(f"{path}:{lineno}: empty video id")
        if video in seen:
            raise TamError(f"{path}:{lineno}: video {video!r} listed twice")
        seen.add(video)
        if task == "classification":
            raw.append(row[col["label"]].strip())
        else:
            try:
                raw.append((float(row[col["valence"]]), float(row[col["arousal"]])))
            except ValueError:
                raise TamError(f"{path}:{lineno}: valence/arousal must be numbers, got {row}") from None
            if not np.all(np.isfinite(raw[-1])):
                raise TamError(f"{path}:{lineno}: valence/arousal must be finite, got {raw[-1]}")
        videos.append(video)
        split.append(s)
        lines.append(lineno)
    if not videos:
        raise TamError(f"{path}: no rows")
    if task == "regression":
        return Labels(task, videos, np.asarray(raw, dtype=np.float32).reshape(-1, 2), split)
    given = bool(classes)
    classes = list(classes) if given else sorted({lab for lab, sp in zip(raw, split) if sp != "test"})
    index = {c: i for i, c in enumerate(classes)}
    for lineno, (lab, video, sp) in zip(lines, zip(raw, videos, split)):
        if lab in index:
            continue
        if given:
            raise TamError(f"{path}:{lineno}: label {lab!r} of video {video!r} is not one of the classes {classes}")
        raise TamError(f"{path}:{lineno}: class {lab!r} of video {video!r} appears only in {sp} rows (the train/val "
                       f"rows have {classes}); list every class in data.classes to keep it")
    return Labels(task, videos, np.asarray([index[c] for c in raw], dtype=np.int64), split, classes)


def carve_validation(labels: Labels, fraction: float, seed: int) -> Labels:
    """Move `fraction` of the training rows to `val` (stratified by class), unless `val` rows exist."""
    if "val" in labels.split or fraction <= 0:
        return labels
    train = [i for i, s in enumerate(labels.split) if s == "train"]
    rng = np.random.default_rng(seed)
    if labels.task == "classification":
        groups = [[i for i in train if labels.targets[i] == c] for c in range(len(labels.classes))]
    else:
        groups = [train]
    split = list(labels.split)
    for g in groups:
        k = int(round(fraction * len(g)))
        for i in rng.permutation(np.asarray(g, dtype=np.int64))[:k]:
            split[int(i)] = "val"
    return replace(labels, split=split)
