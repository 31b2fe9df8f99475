"""Whole-video predictions and a per-segment affect timeline for one video of a feature store.

Windows of T segments cover the video (`tam.features.clips.window_starts`, exactly as evaluation does); the
video's prediction is the mean over windows of the head's output on f^0 (probabilities, or valence/arousal in
their original units) — the same number `tam evaluate` computes.

Timelines (`method`):
  - ``token`` (CTM, inner, cross): the head applied to each fused segment token f^t. The head is linear and
    f^t lives in the same d-dimensional space as f^0 (same final layer norm, Eq. 6), so head(f^t) projects
    each moment, in the context of its window, onto the directions the head uses for the whole video: a
    class-activation map over time. Values are probabilities (softmax) or valence/arousal.
  - ``occlusion`` (any fusion; the default for concat, divide and joint, whose f^0 is M·d wide so the head
    cannot read a d-wide token): the change in the video-level output when one segment is removed
    (marked invalid, so it is never attended to): value_t = out(window) - out(window without t). Positive
    means the segment pushes the prediction towards that class (or up the valence/arousal axis). It costs
    one extra forward pass per segment.
A segment inside two windows (the last window may overlap its neighbour) gets the mean of both.
"""

from __future__ import annotations

import numpy as np
import torch

from tam.features.clips import ClipDataset, collate
from tam.features.store import FeatureStore
from tam.models.model import REGRESSION_TARGETS, AffectModel

TOKEN_FUSIONS = ("ctm", "inner", "cross")
METHODS = ("auto", "token", "occlusion")


def pick_method(method: str, fusion: str) -> str:
    """`auto` -> token for CTM-like fusions (f^t is d-wide), occlusion otherwise."""
    from tam.errors import TamError

    if method not in METHODS:
        raise TamError(f"timeline method {method!r}: choose from {METHODS}")
    if method == "auto":
        return "token" if fusion in TOKEN_FUSIONS else "occlusion"
    if method == "token" and fusion not in TOKEN_FUSIONS:
        raise TamError(f"timeline 'token' needs a fusion with d-wide segment tokens {TOKEN_FUSIONS}, not {fusion!r}"
                       "; use 'occlusion'")
    return method


class Scorer:
    """Maps head outputs to user units: softmax probabilities, or de-standardised valence/arousal."""

    def __init__(self, meta: dict):
        self.task = meta["task"]
        self.names = list(meta["classes"]) if self.task == "classification" else list(REGRESSION_TARGETS)
        self.mean = torch.tensor(meta.get("target_mean") or [0.0] * len(self.names))
        self.std = torch.tensor(meta.get("target_std") or [1.0] * len(self.names))

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if self.task == "classification":
            return out.softmax(-1)
        return out * self.std.to(out.device) + self.mean.to(out.device)


@torch.no_grad()
def analyse(model: AffectModel, meta: dict, store: FeatureStore, video: str, method: str,
            device: torch.device, batch: int = 8) -> dict:
    """Prediction and timeline of one stored video: {"output": [K], "timeline": [T_v, K], "windows": n, ...}."""
    from tam.train.loop import autocast

    cfg, score = meta["model"], Scorer(meta)
    if len(score.names) != model.head.fc.out_features:
        from tam.errors import TamError

        raise TamError(f"the model has {model.head.fc.out_features} outputs but its description names "
                       f"{len(score.names)} ({score.names[:5]})")
    ds = ClipDataset(store, [video], np.zeros(1), list(cfg["modalities"]), int(cfg["T"]), train=False)
    T_v, windows = ds.lengths()[0], ds.windows()
    K = len(score.names)
    video_sum, seg_sum, seg_n = torch.zeros(K), torch.zeros(T_v, K), torch.zeros(T_v)
    model.eval()
    for i in range(0, len(windows), batch):
        chunk = windows[i:i + batch]
        b = collate([ds[w] for w in chunk]).to(device)
        with autocast(device):
            fo = model.forward_features(b.x, b.valid, b.present)
            full = score(model.forward_head(fo.f0)).cpu()  # [B, K]
            per_seg = (score(model.forward_head(fo.f[:, 1:])).cpu() if method == "token"
                       else _occlusion(model, b, full, score, batch))  # [B, T, K]
        video_sum += full.sum(0)
        for j, (_, start) in enumerate(chunk):
            n = int(b.valid[j].sum())
            seg_sum[start:start + n] += per_seg[j, :n]
            seg_n[start:start + n] += 1
    return {"names": score.names, "output": (video_sum / len(windows)).numpy(),
            "timeline": (seg_sum / seg_n.clamp(min=1)[:, None]).numpy(), "windows": len(windows), "T": T_v}


def _occlusion(model: AffectModel, b, full: torch.Tensor, score: Scorer, batch: int) -> torch.Tensor:
    """[B, T, K]: full output minus the output with segment t removed (0 at padded positions)."""
    from tam.train.loop import autocast

    B, T = b.valid.shape
    out = torch.zeros(B, T, full.shape[1])
    rows = [(j, t) for j in range(B) for t in range(T) if b.valid[j, t]]
    step = max(1, batch * 8)
    for i in range(0, len(rows), step):
        part = rows[i:i + step]
        idx = torch.tensor([j for j, _ in part], device=b.valid.device)
        valid = b.valid[idx].clone()
        valid[torch.arange(len(part)), torch.tensor([t for _, t in part])] = False
        x = {m: v[idx] for m, v in b.x.items()}
        with autocast(b.valid.device):
            masked = score(model(x, valid, b.present[idx])).cpu()
        for k, (j, t) in enumerate(part):
            out[j, t] = full[j] - masked[k]
    return out
