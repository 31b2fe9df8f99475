"""Feature normalisation with training statistics, applied inside the model so every path uses it.

Modes (`data.normalize`):
    zscore   (x - mean) / std per modality and dimension
    log1p    signed log1p first, sign(x) * log(1 + |x|), then z-score (for heavy-tailed hand-crafted features)
    none     identity (the paper-exact configuration)
`data.normalize_clip` = k > 0 clips the normalised values at ±k.

Statistics are computed on the TRAINING videos only (`compute_stats`), streamed one video at a time from
the store and merged in float64 with Chan's parallel update (stable for values up to 1e15 and beyond).
Non-finite values are left out of the statistics and become 0 after normalisation; a constant dimension
gets scale 1. `FeatureNorm` holds the statistics as buffers, so they are saved in `best.safetensors` and
`tam evaluate`, `tam predict` and fine-tuning apply exactly what training applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from tam.errors import TamError
from tam.memo import Memo

MODES = ("zscore", "log1p", "none")


def signed_log1p(x):
    """sign(x) * log(1 + |x|) for numpy arrays or tensors."""
    if isinstance(x, Tensor):
        return torch.sign(x) * torch.log1p(x.abs())
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class Moments:
    """Running count, mean and sum of squared deviations per dimension (float64), plus min/max."""

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def zeros(cls, D: int) -> Moments:
        return cls(np.zeros(D), np.zeros(D), np.zeros(D), np.full(D, np.inf), np.full(D, -np.inf))

    def update(self, a: np.ndarray) -> None:
        """Merge a block [N, D] (non-finite entries ignored) into the running moments (Chan et al.)."""
        a = np.asarray(a, dtype=np.float64)
        ok = np.isfinite(a)
        nb = ok.sum(0).astype(np.float64)
        if not nb.any():
            return
        z = np.where(ok, a, 0.0)
        mb = z.sum(0) / np.maximum(nb, 1)
        m2b = (np.where(ok, a - mb, 0.0) ** 2).sum(0)
        n = self.n + nb
        delta = mb - self.mean
        w = np.divide(nb, n, out=np.zeros_like(n), where=n > 0)
        self.mean = self.mean + delta * w
        self.m2 = self.m2 + m2b + delta ** 2 * self.n * w
        self.n = n
        self.lo = np.minimum(self.lo, np.where(ok, a, np.inf).min(0))
        self.hi = np.maximum(self.hi, np.where(ok, a, -np.inf).max(0))

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.divide(self.m2, self.n, out=np.zeros_like(self.m2), where=self.n > 0))


_STATS = Memo(32)  # per process, under the digest of the store's entries and the arguments


def compute_stats(store, videos: Iterable[str], modalities: list[str], mode: str,
                  rows: Iterable[slice] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-modality (mean, scale) over the segments of `videos` (the training rows; `rows`: only these segments of
    each video), in the space of `mode`.

    Absent modalities of a video are skipped; a constant dimension gets scale 1. Raises `TamError` naming the
    modality when none of its values is finite (nothing to normalise with). Kept per process (`tam.memo`): runs
    on the same training split get the same arrays without reading every video again.
    """
    videos = list(videos)
    rows = list(rows) if rows is not None else None
    key = hashlib.sha256(f"{store.fingerprint(videos)}|{list(modalities)}|{mode}|{rows}".encode()).hexdigest()
    stats = _STATS.get_or(key, lambda: _compute_stats(store, videos, modalities, mode, rows))
    return {m: (mean.copy(), scale.copy()) for m, (mean, scale) in stats.items()}


def _compute_stats(store, videos: list[str], modalities: list[str], mode: str,
                   rows: list[slice] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    dims = store.manifest.dims
    moments = {m: Moments.zeros(dims[m]) for m in modalities}
    for v, sl in zip(videos, rows if rows is not None else [slice(None)] * len(videos), strict=True):
        f = store.read(v)
        for m in modalities:
            if f.present[m]:
                a = np.asarray(f.features[m][sl], dtype=np.float64)
                moments[m].update(signed_log1p(a) if mode == "log1p" else a)
    out = {}
    for m, mo in moments.items():
        if not mo.n.any():
            raise TamError(f"{store.root}: cannot compute normalisation statistics for modality {m!r}: "
                           "no finite value in the training videos")
        std = mo.std
        scale = np.where((std > 1e-12 * np.maximum(1.0, np.abs(mo.mean))) & np.isfinite(std), std, 1.0)
        out[m] = (np.where(mo.n > 0, mo.mean, 0.0), scale)
    return out


class FeatureNorm(nn.Module):
    """Per-modality normalisation: buffers `mean_<m>`, `scale_<m>` [D_m], `log1p` and `clip` (scalars).

    Built as the identity; `set_stats` fills it. Checkpoints saved before normalisation existed (no `norm.*`
    keys) load as the identity.
    """

    def __init__(self, dims: dict[str, int]):
        super().__init__()
        self.modalities = list(dims)
        for m, D in dims.items():
            self.register_buffer(f"mean_{m}", torch.zeros(D))
            self.register_buffer(f"scale_{m}", torch.ones(D))
        self.register_buffer("log1p", torch.zeros(()))
        self.register_buffer("clip", torch.zeros(()))

    def set_stats(self, stats: dict[str, tuple[np.ndarray, np.ndarray]], mode: str, clip: float) -> None:
        """Load (mean, scale) per modality for `mode` (zscore | log1p | none) and the clip level (0 = off)."""
        if mode not in MODES:
            raise TamError(f"data.normalize must be one of {MODES}, got {mode!r}")
        for m in self.modalities:
            mean, scale = stats.get(m, (None, None)) if mode != "none" else (None, None)
            getattr(self, f"mean_{m}").copy_(torch.zeros_like(getattr(self, f"mean_{m}")) if mean is None
                                             else torch.as_tensor(mean, dtype=torch.float32))
            getattr(self, f"scale_{m}").copy_(torch.ones_like(getattr(self, f"scale_{m}")) if scale is None
                                              else torch.as_tensor(scale, dtype=torch.float32))
        self.log1p.fill_(float(mode == "log1p"))
        self.clip.fill_(float(clip) if mode != "none" else 0.0)

    @property
    def mode(self) -> str:
        if bool(self.log1p):
            return "log1p"
        ident = all(not getattr(self, f"mean_{m}").any() and bool((getattr(self, f"scale_{m}") == 1).all())
                    for m in self.modalities)
        return "none" if ident and not bool(self.clip) else "zscore"

    def forward(self, x: dict[str, Tensor], valid: Tensor | None = None) -> dict[str, Tensor]:
        """Normalise each modality [B, T, D_m]; non-finite results become 0, padded positions stay 0."""
        out = {}
        for m, v in x.items():
            if m not in self.modalities:
                out[m] = v
                continue
            y = v.float()
            if bool(self.log1p):
                y = signed_log1p(y)
            y = (y - getattr(self, f"mean_{m}")) / getattr(self, f"scale_{m}")
            if bool(self.clip > 0):
                y = y.clamp(-self.clip, self.clip)
            y = torch.where(torch.isfinite(v) & torch.isfinite(y), y, torch.zeros_like(y))
            if valid is not None:
                y = y * valid[..., None].to(y.dtype)
            out[m] = y
        return out

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if not any(k.startswith(prefix) for k in state_dict):  # an older checkpoint: keep the identity
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


# ---- `tam store stats` ---------------------------------------------------------------------------------------
HEAVY_Z = 20.0  # a value this many σ from the mean: heavy-tailed (a Gaussian's max over 1e9 values is ~6 σ)
HEAVY_KURTOSIS = 50.0  # excess kurtosis (Gaussian 0, Laplace 3)
SAMPLE_ROWS = 4096  # rows kept to compare columns for duplicates


def describe_store(store, videos: list[str] | None = None) -> dict[str, dict]:
    """Per modality: rows, per-dimension mean/std/min/max/excess kurtosis/max |z| (two streamed passes, float64), and
    the flagged dimensions: heavy-tailed, constant, duplicated (identical to an earlier dimension)."""
    videos = store.videos() if videos is None else videos
    dims = store.manifest.dims
    mo = {m: Moments.zeros(D) for m, D in dims.items()}
    sample: dict[str, list[np.ndarray]] = {m: [] for m in dims}
    for v in videos:
        f = store.read(v)
        for m in dims:
            if f.present[m]:
                a = np.asarray(f.features[m], dtype=np.float64)
                mo[m].update(a)
                if sum(len(s) for s in sample[m]) < SAMPLE_ROWS:
                    sample[m].append(a[:SAMPLE_ROWS])
    m4 = {m: np.zeros(D) for m, D in dims.items()}
    zmax = {m: np.zeros(D) for m, D in dims.items()}
    for v in videos:
        f = store.read(v)
        for m in dims:
            if f.present[m]:
                std = np.where(mo[m].std > 0, mo[m].std, 1.0)
                z = (np.asarray(f.features[m], dtype=np.float64) - mo[m].mean) / std
                z = np.where(np.isfinite(z), z, 0.0)
                m4[m] += (z ** 4).sum(0)
                zmax[m] = np.maximum(zmax[m], np.abs(z).max(0))
    out = {}
    for m, D in dims.items():
        n = mo[m].n
        std = mo[m].std
        kurt = np.where((n > 0) & (std > 0), m4[m] / np.maximum(n, 1) - 3.0, 0.0)
        constant = np.flatnonzero((n > 0) & (std <= 1e-12 * np.maximum(1.0, np.abs(mo[m].mean))))
        heavy = np.flatnonzero((std > 0) & ((zmax[m] > HEAVY_Z) | (kurt > HEAVY_KURTOSIS)))
        out[m] = {"rows": int(n.max()) if D else 0, "dim": D, "mean": mo[m].mean, "std": std, "min": mo[m].lo,
                  "max": mo[m].hi, "kurtosis": kurt, "max_abs_z": zmax[m], "constant": constant.tolist(),
                  "heavy": heavy.tolist(), "duplicated": _duplicates(np.concatenate(sample[m]) if sample[m] else None)}
    return out


def _duplicates(a: np.ndarray | None) -> list[tuple[int, int]]:
    """(dimension, the earlier dimension it equals) on the sampled rows."""
    if a is None:
        return []
    seen: dict[bytes, int] = {}
    dup = []
    for j in range(a.shape[1]):
        key = np.ascontiguousarray(a[:, j]).tobytes()
        if key in seen:
            dup.append((j, seen[key]))
        else:
            seen[key] = j
    return dup


def format_report(report: dict[str, dict], show: int = 8) -> str:
    """Text for `tam store stats`: one summary line per modality, then the flagged dimensions."""
    lines = []
    for m, r in report.items():
        if not r["rows"]:
            lines.append(f"{m}: no rows")
            continue
        lines.append(f"{m}: {r['dim']} dims, {r['rows']} rows; mean of |mean| {np.mean(np.abs(r['mean'])):.3g}, "
                     f"std median {np.median(r['std']):.3g} [min {r['std'].min():.3g}, max {r['std'].max():.3g}], "
                     f"values in [{r['min'].min():.3g}, {r['max'].max():.3g}]")
        for what, idx in (("heavy-tailed", r["heavy"]), ("constant", r["constant"])):
            if idx:
                detail = ", ".join(f"{j} (max|z| {r['max_abs_z'][j]:.0f}, kurtosis {r['kurtosis'][j]:.0f})"
                                   if what == "heavy-tailed" else str(j) for j in idx[:show])
                lines.append(f"  {what}: {len(idx)} dims: {detail}{' ...' if len(idx) > show else ''}")
        if r["duplicated"]:
            detail = ", ".join(f"{j}={k}" for j, k in r["duplicated"][:show])
            lines.append(f"  duplicated: {len(r['duplicated'])} dims: {detail}"
                         f"{' ...' if len(r['duplicated']) > show else ''}")
    flagged = any(r.get("heavy") for r in report.values())
    if flagged:
        lines.append("heavy-tailed dimensions: train with data.normalize=log1p (signed log1p, then z-score)")
    return "\n".join(lines)
