"""Clips from the feature store, padding and masks (True = valid).

Training draws T random consecutive segments of each video (section 5.2); the draw is a pure function of
(seed, epoch, video index), so a resumed run and a run split over several processes see the same clips.
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

    def to(self, device: torch.device) -> Batch:
        return Batch({m: v.to(device, non_blocking=True) for m, v in self.x.items()}, self.valid.to(device),
                     self.present.to(device), self.target.to(device), self.index)


def crop_start(T_v: int, T: int, seed: int, epoch: int, index: int) -> int:
    """Start of a random window of T consecutive segments, reproducible from (seed, epoch, index)."""
    if T_v <= T:
        return 0
    rng = np.random.default_rng([seed, epoch, index])
    return int(rng.integers(0, T_v - T + 1))


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
                 seed: int = 0, train: bool = True):
        self.store, self.videos, self.targets = store, videos, targets
        self.modalities, self.T, self.seed, self.train = modalities, T, seed, train
        self._lengths: list[int] | None = None

    def lengths(self) -> list[int]:
        if self._lengths is None:
            self._lengths = [self.store.read(v).T for v in self.videos]
        return self._lengths

    def windows(self) -> list[tuple[int, int]]:
        """All evaluation windows as (row, start)."""
        return [(i, s) for i, n in enumerate(self.lengths()) for s in window_starts(n, self.T)]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, item: tuple[int, int]):
        i, k = item
        v = self.store.read(self.videos[i])
        start = crop_start(v.T, self.T, self.seed, k, i) if self.train else k
        stop = min(start + self.T, v.T)
        x = {m: torch.from_numpy(np.array(v.features[m][start:stop], dtype=np.float32)) for m in self.modalities}
        present = torch.tensor([v.present[m] for m in self.modalities])
        return x, present, torch.as_tensor(self.targets[i]), i


def collate(items) -> Batch:
    """Pad clips to the longest in the batch; `valid` marks real segments."""
    B, T = len(items), max(it[0][next(iter(it[0]))].shape[0] for it in items)
    mods = list(items[0][0])
    x = {m: torch.zeros(B, T, items[0][0][m].shape[1]) for m in mods}
    valid = torch.zeros(B, T, dtype=torch.bool)
    for b, (feats, _, _, _) in enumerate(items):
        n = feats[mods[0]].shape[0]
        valid[b, :n] = True
        for m in mods:
            x[m][b, :n] = feats[m]
    present = torch.stack([it[1] for it in items])
    target = torch.stack([it[2] for it in items])
    index = torch.tensor([it[3] for it in items])
    return Batch(x, valid, present, target, index)


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
