"""Prediction heads on f^0: a classifier over C classes or a regressor of (valence, arousal); and the readouts
that make the head's input from the fusion output f (`model.readout`):

  - f0:        the paper's video token f^0 (the fusion's own `f0`; concatenated first tokens for some baselines)
  - mean:      the mean of f^t over the valid segments t = 1..T
  - attentive: Σ_t a_t f^t with a = softmax_t(w · f^t) over the valid segments (a learned query w; fine-tuning
               from TSC pre-training starts it where appearing-time prediction finds comments, tam.train.readout_init)

Padded segments never influence a pooled output (they get weight 0, tested). The pooling's parameters belong
to the head (`head.pool.*`): fine-tuning trains them at the head's learning rate, never loads them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tam.models.stochastic import Dropout


class SegmentPool(nn.Module):
    """f [B, T+1, d], valid [B, T+1] (True = real token; column 0 is f^0) -> [B, d] pooled over valid segments."""

    def __init__(self, d: int, kind: str):
        super().__init__()
        if kind not in ("mean", "attentive"):
            raise ValueError(f"pooling must be mean or attentive, got {kind!r}")
        self.kind = kind
        if kind == "attentive":
            self.query = nn.Linear(d, 1, bias=False)  # w (a bias would cancel in the softmax)

    def weights(self, f: Tensor, valid: Tensor) -> Tensor:
        """[B, T] weights over the segments f[:, 1:]; 0 on padded segments; rows sum to 1 (0 if none valid)."""
        seg, ok = f[:, 1:], valid[:, 1:]
        if self.kind == "mean":
            w = ok.to(f.dtype)
            return w / w.sum(-1, keepdim=True).clamp(min=1)
        score = self.query(seg).squeeze(-1).float().masked_fill(~ok, float("-inf"))
        score = score.masked_fill(~ok.any(-1, keepdim=True), 0.0)  # no valid segment: finite, zeroed below
        return (score.softmax(-1) * ok).to(f.dtype)

    def forward(self, f: Tensor, valid: Tensor) -> Tensor:
        return torch.einsum("bt,btd->bd", self.weights(f, valid), f[:, 1:])


class Head(nn.Module):
    """Dropout (per-sample masks, tam.models.stochastic) and a linear layer: logits [B, C] for classification,
    [B, 2] (valence, arousal) for regression."""

    def __init__(self, in_dim: int, outputs: int, dropout: float = 0.1, pool: SegmentPool | None = None):
        super().__init__()
        self.pool = pool  # the readout for model.readout = mean | attentive (None: the fusion's f0)
        self.drop = Dropout(dropout)
        self.fc = nn.Linear(in_dim, outputs)

    def forward(self, f0: Tensor) -> Tensor:
        return self.fc(self.drop(f0))
