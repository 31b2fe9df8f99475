"""Diagnostics that show why a model does what it does: for one video, CTM's attention (which segments of each
modality every token attends to, in the last layer) and what the video-level readout reads (f^0's attention
over segments; the weights of a pooling readout). Figures: `tam.report.plots.cross_attention`,
`tam.report.plots.readout_weights`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tam.features.clips import ClipDataset, collate
from tam.features.store import FeatureStore
from tam.models.fusion import CTMFusion, attention_maps


@dataclass
class VideoAttention:
    video: str
    modalities: list[str]
    pairs: list[tuple[int, int]]  # (query modality, key modality) per map, the M inner pairs first
    maps: np.ndarray  # [P, h, T+1, T+1] the last layer's attention (first window of the video)
    n_valid: int  # valid segments in that window
    f0_attention: np.ndarray  # [n_valid] f^0's attention over segments: X_0 rows of the inner pairs, mean
    readout: np.ndarray | None  # [n_valid] the pooling readout's weights (model.readout mean / attentive)


@torch.no_grad()
def video_attention(model, store: FeatureStore, video: str, T: int) -> VideoAttention:
    """Attention of a trained AffectModel with a CTM fusion on the first window of `video` (eval mode)."""
    if not isinstance(model.fusion, CTMFusion):
        raise TypeError(f"attention diagnostics need a CTM fusion, not {type(model.fusion).__name__}")
    ds = ClipDataset(store, [video], np.zeros(1), model.modalities, T, train=False)
    b = collate([ds[(0, 0)]])
    model.eval()
    x = model.norm(b.x, b.valid) if hasattr(model, "norm") else b.x
    last = attention_maps(model.fusion, x, b.valid, b.present)[-1][0]  # [P, h, L, L]
    n = int(b.valid[0].sum())
    layer = model.fusion.layers[-1]
    pairs = list(zip(layer.q_idx.tolist(), layer.k_idx.tolist(), strict=True))
    inner = [k for k, (q, kk) in enumerate(pairs) if q == kk]
    f0 = last[inner][:, :, 0, 1:n + 1].mean((0, 1)).numpy() if inner else np.zeros(n)
    readout = None
    if getattr(model.head, "pool", None) is not None:
        fo = model.fusion(x, b.valid, b.present)
        readout = model.head.pool.weights(fo.f, fo.valid)[0, :n].numpy()
    return VideoAttention(video, list(model.modalities), pairs, last.numpy(), n, f0, readout)


def attention_figures(att: VideoAttention, title: str, events: dict[str, list[int]] | None = None) -> dict[str, bytes]:
    """{"attention": the per-pair heatmaps, "readout": f^0's attention (and the pooling weights) per segment}."""
    from tam.report import plots

    weights = {"f^0's attention over segments (last layer, inner pairs)": att.f0_attention.tolist()}
    if att.readout is not None:
        weights["pooling readout's weights"] = att.readout.tolist()
    return {"attention": plots.cross_attention(att.maps, att.modalities, att.pairs, att.n_valid, title, events),
            "readout": plots.readout_weights(weights, events, f"what the video-level readout reads: {att.video}")}
