"""Training-time augmentation of clips, and the supervised loss with label smoothing and mixup.

Every draw is a pure function of (seed, epoch, video index): a resumed run and a run split over any number
of processes see the same augmented clips. The options and the measurements behind their defaults are in
docs/training.md ("Regularisation and schedules").

  - token (segment) dropout: each segment of the clip is masked out (`valid` = False) with probability p;
    at least one segment stays.
  - modality dropout: with probability p the clip loses one of its present modalities (present = False,
    features zeroed, exactly as a video without that track); never all modalities.
  - mixup between videos: a partner video j ≠ i (uniform over the training rows), cropped to the clip's
    length, λ ~ Beta(α, α) kept >= 0.5: x = λ x_i + (1 - λ) x_j, present = present_i | present_j; the loss
    mixes the targets (classification: soft targets = mixed cross-entropies; regression: mixed values).
  - temporal shift: a clip of n < T segments starts at a random slot s in [0, T − n] of the T-slot window (slots
    before s are padding, `valid` = False), so that the position embedding P_e sees its events at other absolute
    positions; segment offsets within the clip are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tam.config import RunConfig


@dataclass
class Augment:
    """Per-item augmentation for `ClipDataset(augment=...)`: (ds, item, epoch) -> item."""

    token_dropout: float = 0.0
    modality_dropout: float = 0.0
    mixup_alpha: float = 0.0
    seed: int = 0
    shift: bool = False

    def __call__(self, ds, item: tuple, epoch: int) -> tuple:
        x, present, target, i, extras = item
        extras = dict(extras)
        rng = np.random.default_rng([self.seed, epoch, i, 3])
        if self.mixup_alpha > 0 and len(ds) > 1:
            x, present = self.mixup(ds, x, present, i, rng, extras)
        n = next(iter(x.values())).shape[0]
        if self.token_dropout > 0 and n > 1:
            keep = rng.random(n) >= self.token_dropout
            if not keep.any():
                keep[rng.integers(n)] = True
            extras["valid"] = torch.from_numpy(keep)
        if self.modality_dropout > 0:
            on = np.flatnonzero(present.numpy())
            if len(on) > 1 and rng.random() < self.modality_dropout:
                drop = int(on[rng.integers(len(on))])
                present = present.clone()
                present[drop] = False
                m = list(x)[drop]
                x = {**x, m: torch.zeros_like(x[m])}
        if self.shift and n < ds.T:
            s = int(np.random.default_rng([self.seed, epoch, i, 4]).integers(ds.T - n + 1))
            x, extras = self.shifted(x, extras, s)
        return x, present, target, i, extras

    @staticmethod
    def shifted(x: dict[str, Tensor], extras: dict, s: int) -> tuple[dict[str, Tensor], dict]:
        """The clip moved s slots later: s leading padded segments (valid = False)."""
        n = next(iter(x.values())).shape[0]
        valid = torch.cat([torch.zeros(s, dtype=torch.bool), extras.get("valid", torch.ones(n, dtype=torch.bool))])
        x = {m: torch.cat([v.new_zeros(s, v.shape[1]), v]) for m, v in x.items()}
        return x, {**extras, "valid": valid}

    def mixup(self, ds, x: dict[str, Tensor], present: Tensor, i: int, rng: np.random.Generator,
              extras: dict) -> tuple[dict[str, Tensor], Tensor]:
        j = int(rng.integers(len(ds) - 1))
        j += j >= i
        lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
        lam = max(lam, 1 - lam)
        n = next(iter(x.values())).shape[0]
        T_j = ds.read(j).T
        xb, pb = ds.clip(j, int(rng.integers(0, max(1, T_j - n + 1))), n)
        mixed = {}
        for m, a in x.items():
            b = torch.zeros_like(a)
            b[: xb[m].shape[0]] = xb[m]
            mixed[m] = lam * a + (1 - lam) * b
        extras["target_b"], extras["lam"] = torch.as_tensor(ds.targets[j]), lam
        return mixed, present | pb


def build_augment(cfg: RunConfig) -> Augment | None:
    """The clip augmentation of `cfg.augment`, or None when every option is off (the paper)."""
    a = cfg.augment
    if not (a.token_dropout or a.modality_dropout or a.mixup_alpha or a.shift):
        return None
    return Augment(a.token_dropout, a.modality_dropout, a.mixup_alpha, cfg.train.seed, a.shift)


def loss_sum(task: str, out: Tensor, target: Tensor, mean: list[float], std: list[float], smoothing: float = 0.0,
             target_b: Tensor | None = None, lam: Tensor | None = None) -> Tensor:
    """Summed (not averaged) loss over the local batch; the caller divides by the global batch size.

    Classification: cross-entropy with label smoothing ε; with mixup λ·CE(y_a) + (1-λ)·CE(y_b), which is the
    cross-entropy against the soft target λ·y_a + (1-λ)·y_b. Regression: MSE on standardised targets (the
    mixed target λ·y_a + (1-λ)·y_b with mixup), averaged over the 2 outputs."""
    out = out.float()
    if task == "classification":
        ce = F.cross_entropy(out, target, reduction="none", label_smoothing=smoothing)
        if lam is not None:
            ce = lam * ce + (1 - lam) * F.cross_entropy(out, target_b, reduction="none", label_smoothing=smoothing)
        return ce.sum()
    if lam is not None:
        target = lam[:, None] * target + (1 - lam[:, None]) * target_b
    z = (target - target.new_tensor(mean)) / target.new_tensor(std)
    return F.mse_loss(out, z, reduction="sum") / z.shape[1]
