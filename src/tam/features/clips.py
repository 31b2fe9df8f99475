"""Clips from the feature store, padding and masks (True = valid).

Training draws T random consecutive segments of each video (section 5.2; with `min_fraction` < 1 a random
length in [min_fraction·T, T] too); the draw is a pure function of (seed, epoch, video index), so a resumed
run and a run split over several processes see the same clips. Each training item also carries a per-sample
seed from (seed, epoch, index) for the model's stochastic layers (tam.models.stochastic), and an optional
`augment` callable (tam.train.augment) transforms it with its own (seed, epoch, index) stream.
Evaluation covers the whole video with windows of T segments (the last window aligned with the end), and
the caller averages the window predictions per video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from tam.features.store import FeatureStore


@dataclass
class Batch:
    x: dict[str, Tensor]  # m -> [B, T, D_m]
    valid: Tensor  # [B, T] bool
    present: Tensor  # [B, M] bool
    target: Tensor  # [B] long or [B, 2] float
    index: Tensor  # [B] row of the labels table (evaluation: which video a window belongs to)
    seed: Tensor | None = None  # [B] int64 per-sample seeds of the model's random streams (training)
    target_b: Tensor | None = None  # [B] or [B, 2] mixup partner's target (training with mixup)
    lam: Tensor | None = None  # [B] float mixup weight of `target` (1 - lam for target_b)

    def to(self, device: torch.device) -> Batch:
        opt = {k: None if v is None else v.to(device) for k, v in (("target_b", self.target_b), ("lam", self.lam))}
        return Batch({m: v.to(device, non_blocking=True) for m, v in self.x.items()}, self.valid.to(device),
                     self.present.to(device), self.target.to(device), self.index, self.seed, **opt)


def crop_start(T_v: int, T: int, seed: int, epoch: int, index: int) -> int:
    """Start of a random window of T consecutive segments, reproducible from (seed, epoch, index)."""
    if T_v <= T:
        return 0
    rng = np.random.default_rng([seed, epoch, index])
    return int(rng.integers(0, T_v - T + 1))


def crop_window(T_v: int, T: int, seed: int, epoch: int, index: int, min_fraction: float = 1.0) -> tuple[int, int]:
    """(start, length) of a random training window: length T (or T·u, u ~ U[min_fraction, 1]), at most T_v.

    With min_fraction = 1 this is exactly `crop_start`'s window (the paper's crop)."""
    if min_fraction >= 1:
        return crop_start(T_v, T, seed, epoch, index), min(T, T_v)
    rng = np.random.default_rng([seed, epoch, index, 2])
    n = min(T_v, max(1, int(round(T * rng.uniform(min_fraction, 1.0)))))
    return int(rng.integers(0, T_v - n + 1)), n


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Seed of sample `index`'s random streams in `epoch` (model layers: dropout, stochastic depth, noise)."""
    return int(np.random.default_rng([seed, epoch, index, 1]).integers(0, 2**62))


def window_starts(T_v: int, T: int) -> list[int]:
    """Windows of T covering [0, T_v): stride T, the last one ending at T_v (it may overlap its neighbour)."""
    if T_v <= T:
        return [0]
    starts = list(range(0, T_v - T + 1, T))
    if starts[-1] + T < T_v:
        starts.append(T_v - T)
    return starts


class ClipDataset(Dataset):
    """Items are (row, epoch) for training crops, or (row, start) windows for evaluation."""

    def __init__(self, store: FeatureStore, videos: list[str], targets: np.ndarray, modalities: list[str], T: int,
                 seed: int = 0, train: bool = True, min_fraction: float = 1.0, augment=None):
        self.store, self.videos, self.targets = store, videos, targets
        self.modalities, self.T, self.seed, self.train = modalities, T, seed, train
        self.min_fraction = min_fraction
        self.augment = augment  # (ds, item, epoch) -> item, training only (tam.train.augment.Augment)
        self._lengths: list[int] | None = None

    def read(self, i: int):
        """Video i's features (memory maps; the store checks and maps each entry once)."""
        return self.store.read(self.videos[i])

    def lengths(self) -> list[int]:
        if self._lengths is None:
            self._lengths = [self.read(i).T for i in range(len(self.videos))]
        return self._lengths

    def windows(self) -> list[tuple[int, int]]:
        """All evaluation windows as (row, start)."""
        return [(i, s) for i, n in enumerate(self.lengths()) for s in window_starts(n, self.T)]

    def __len__(self) -> int:
        return len(self.videos)

    def clip(self, i: int, start: int, n: int, v=None) -> tuple[dict[str, Tensor], Tensor]:
        """Features of segments [start, start + n) of video i (cut at its end) and its present flags [M]."""
        v = v if v is not None else self.read(i)
        stop = min(start + n, v.T)
        x = {m: torch.from_numpy(np.array(v.features[m][start:stop], dtype=np.float32)) for m in self.modalities}
        return x, torch.tensor([v.present[m] for m in self.modalities])

    def __getitem__(self, item: tuple[int, int]):
        """Evaluation: (x, present, target, i); training: the same plus a dict of extras (seed, valid, mixup)."""
        i, k = item
        if not self.train:
            return (*self.clip(i, k, self.T), torch.as_tensor(self.targets[i]), i)
        v = self.read(i)
        start, n = crop_window(v.T, self.T, self.seed, k, i, self.min_fraction)
        x, present = self.clip(i, start, n, v)
        it = (x, present, torch.as_tensor(self.targets[i]), i, {"seed": sample_seed(self.seed, k, i)})
        return self.augment(self, it, k) if self.augment is not None else it


def collate(items, pad_to: int = 0) -> Batch:
    """Pad clips to the longest in the batch (at least `pad_to`); `valid` marks real segments.

    Items are (x, present, target, index) or, from training, the same plus a dict of extras: `seed` (the
    sample's seed), `valid` ([n] bool: segments kept by token dropout), `target_b` and `lam` (mixup).
    Training pads to T (`pad_to`) so that every sample's random draws have one shape whatever its batch."""
    B, T = len(items), max([pad_to] + [it[0][next(iter(it[0]))].shape[0] for it in items])
    mods = list(items[0][0])
    x = {m: torch.zeros(B, T, items[0][0][m].shape[1]) for m in mods}
    valid = torch.zeros(B, T, dtype=torch.bool)
    extras = [it[4] if len(it) > 4 else {} for it in items]
    for b, (it, ex) in enumerate(zip(items, extras, strict=True)):
        feats = it[0]
        n = feats[mods[0]].shape[0]
        valid[b, :n] = ex["valid"] if "valid" in ex else True
        for m in mods:
            x[m][b, :n] = feats[m]
    present = torch.stack([it[1] for it in items])
    target = torch.stack([it[2] for it in items])
    index = torch.tensor([it[3] for it in items])
    seed = torch.tensor([ex["seed"] for ex in extras], dtype=torch.long) if "seed" in extras[0] else None
    if "lam" not in extras[0]:
        return Batch(x, valid, present, target, index, seed)
    target_b = torch.stack([torch.as_tensor(ex["target_b"]) for ex in extras])
    lam = torch.tensor([float(ex["lam"]) for ex in extras])
    return Batch(x, valid, present, target, index, seed, target_b, lam)


class GlobalBatchSampler:
    """Seeded global batches, each split across ranks (rank r takes every world-th item of a global batch).

    With the loss normalised by the global batch size, W processes compute exactly the gradient one
    process computes on the same global batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True):
        self.n, self.bs, self.seed, self.rank, self.world, self.shuffle = n, batch_size, seed, rank, world, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        batches = [order[i:i + self.bs].tolist() for i in range(0, self.n, self.bs)]
        if batches and len(batches[-1]) < self.world:  # every rank needs an item; the few left wait a new epoch
            batches.pop()
        return batches

    def __iter__(self):
        for g in self.global_batches():
            yield [(i, self.epoch) for i in g[self.rank::self.world]]

    def __len__(self) -> int:
        return len(self.global_batches())
