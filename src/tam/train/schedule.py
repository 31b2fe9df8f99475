"""Learning-rate schedules (per optimiser step, resumable), early stopping and weight EMA.

The schedule multiplies each parameter group's base lr by `lr_factor(step)`:

    warm-up     (step + 1) / W                               for the first W = warmup_epochs · steps/epoch steps
    step        lr_gamma ^ ⌊epoch / lr_step_epochs⌋          (1 when lr_step_epochs = 0: the paper's constant lr)
    cosine      ½ (1 + cos(π · (step - W) / (S - W)))        S = epochs · steps/epoch; reaches 0 at the end

It is a `LambdaLR` stepped after every optimiser step; its state (the step count) goes into `last.pt`.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from tam.config import OptimConfig


def lr_factor(step: int, steps_per_epoch: int, o: OptimConfig) -> float:
    """Multiplier of the base learning rate at optimiser step `step` (0-based)."""
    spe = max(1, steps_per_epoch)
    warm = int(round(o.warmup_epochs * spe))
    if step < warm:
        return (step + 1) / warm
    if o.schedule == "cosine":
        total = max(warm + 1, o.epochs * spe)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))
    return o.lr_gamma ** (step // spe // o.lr_step_epochs) if o.lr_step_epochs > 0 else 1.0


def build_scheduler(opt: torch.optim.Optimizer, o: OptimConfig, steps_per_epoch: int):
    """A per-step LambdaLR following `lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, steps_per_epoch, o))


def should_stop(epoch: int, best_epoch: int, patience: int) -> bool:
    """Early stopping before `epoch`: the last `patience` finished epochs brought no better validation score."""
    return patience > 0 and best_epoch >= 0 and epoch - 1 - best_epoch >= patience


class EMA:
    """Exponential moving average of a model's weights: θ_ema ← d·θ_ema + (1 - d)·θ after every step.

    Floating-point buffers (e.g. normalisation statistics) are copied, not averaged. `module` is a full model
    with the averaged weights: evaluate, select and save it."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for e, p in zip(self.module.parameters(), model.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - self.decay)
        for e, b in zip(self.module.buffers(), model.buffers(), strict=True):
            e.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
