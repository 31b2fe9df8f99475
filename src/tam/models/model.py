"""The affect model: a fusion module (CTM or a baseline) plus a head; `build_model(cfg, dims)` builds it."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from tam.config import ModelConfig
from tam.features.normalize import FeatureNorm
from tam.models.baselines import ConcatFusion, JointFusion
from tam.models.fusion import CTMFusion, FusionOutput
from tam.models.heads import Head, SegmentPool

REGRESSION_TARGETS = ("valence", "arousal")


class AffectModel(nn.Module):
    """`forward_features` normalises the features (training statistics, `norm.*` buffers) and fuses them;
    `forward_head` gives the prediction from f^0."""

    def __init__(self, fusion: nn.Module, outputs: int, dropout: float, dims: dict[str, int] | None = None,
                 readout: str = "f0"):
        super().__init__()
        self.norm = FeatureNorm(dims or {})
        self.fusion = fusion
        self.modalities = list(fusion.modalities)
        self.readout = readout
        pool = None if readout == "f0" else SegmentPool(fusion.d, readout)
        self.head = Head(fusion.out_dim if pool is None else fusion.d, outputs, dropout, pool)

    def forward_features(self, x: dict[str, Tensor], valid: Tensor, present: Tensor) -> FusionOutput:
        """The fusion output; its `f0` is what the head reads (`model.readout`: f^0 or a pooling of f)."""
        fo = self.fusion(self.norm(x, valid), valid, present)
        return fo if self.head.pool is None else replace(fo, f0=self.head.pool(fo.f, fo.valid))

    def forward_head(self, f0: Tensor) -> Tensor:
        return self.head(f0)

    def forward(self, x: dict[str, Tensor], valid: Tensor, present: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x, valid, present).f0)


def build_fusion(cfg: ModelConfig, dims: dict[str, int]) -> nn.Module:
    """The fusion module named by `cfg.fusion`, over the modalities `cfg.modalities` with feature dims `dims`."""
    dims = {m: dims[m] for m in cfg.modalities}
    kw = dict(d=cfg.d, layers=cfg.layers, heads=cfg.heads, ffn_mult=cfg.ffn_mult, dropout=cfg.dropout, T=cfg.T,
              drop_path=cfg.drop_path, noise=cfg.noise, pos_init=cfg.pos_init)
    # the options of the CTM fusions only
    ctm = dict(kw, rel_bias=cfg.rel_bias, rel_bias_scale=cfg.rel_bias_scale, rel_bias_init=cfg.rel_bias_init,
               centre=cfg.centre, tie_projections=cfg.tie_projections)
    fusions = {
        "ctm": lambda: CTMFusion(dims, attention="both", **ctm),
        "inner": lambda: CTMFusion(dims, attention="inner", **ctm),
        "cross": lambda: CTMFusion(dims, attention="cross", **ctm),
        "concat": lambda: ConcatFusion(dims, divide=False, **kw),
        "divide": lambda: ConcatFusion(dims, divide=True, **kw),
        "joint": lambda: JointFusion(dims, **kw),
    }
    return fusions[cfg.fusion]()


def build_model(cfg: ModelConfig, dims: dict[str, int], outputs: int) -> AffectModel:
    missing = [m for m in cfg.modalities if m not in dims]
    if missing:
        raise ValueError(f"modalities {missing} have no features (available: {sorted(dims)})")
    return AffectModel(build_fusion(cfg, dims), outputs, cfg.dropout, {m: dims[m] for m in cfg.modalities},
                       readout=cfg.readout)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def init_check(model: nn.Module) -> None:
    """Raise if any parameter is non-finite (a cheap guard after loading weights)."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise ValueError(f"parameter {name} has NaN/Inf")
