"""Prediction heads on f^0: a classifier over C classes or a regressor of (valence, arousal)."""

from __future__ import annotations

from torch import Tensor, nn


class Head(nn.Module):
    """Dropout and a linear layer: logits [B, C] for classification, [B, 2] (valence, arousal) for regression."""

    def __init__(self, in_dim: int, outputs: int, dropout: float = 0.1):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, outputs)

    def forward(self, f0: Tensor) -> Tensor:
        return self.fc(self.drop(f0))
