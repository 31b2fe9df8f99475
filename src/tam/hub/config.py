"""`config.json` of an exported model folder: the checkpoint description (`best.json`'s keys, checked by the same
functions of `tam.train.checkpoint`), plus what a receiver needs without the run directory:

    library_name, format        "tam", FORMAT (bumped when the layout changes)
    model, dims, outputs, task, classes, target_mean, target_std     as in best.json (model.readout included)
    features                    the feature store manifest: encoder names, weight digests, preprocessing, segments
    normalization               {"mode", "clip", "mean": {m: [D_m]}, "scale": {m: [D_m]}}: FeatureNorm's buffers
    code_version, source        the code that trained it; the run it came from (run, epoch)
    onnx                        only with model.onnx: its inputs, outputs, opset and the checked max |ONNX - torch|

The normalisation statistics are written out for readers that are not tam; loading checks them against the
`norm.*` tensors of model.safetensors (the ones the model applies) and refuses a folder where they differ.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tam.errors import TamError
from tam.features.normalize import MODES

FORMAT = 1


def export_config(meta: dict, model: torch.nn.Module, source: dict) -> dict:
    """config.json for the model rebuilt from `meta` (a checked best.json)."""
    keys = ("model", "dims", "outputs", "task", "classes", "target_mean", "target_std", "features", "code_version")
    out = {"library_name": "tam", "format": FORMAT, **{k: meta[k] for k in keys if k in meta}}
    norm = model.norm
    out["normalization"] = {"mode": norm.mode, "clip": float(norm.clip),
                            "mean": {m: getattr(norm, f"mean_{m}").tolist() for m in norm.modalities},
                            "scale": {m: getattr(norm, f"scale_{m}").tolist() for m in norm.modalities}}
    out["source"] = source
    return out


def check_export(meta: dict, dims: dict[str, int], path: Path) -> None:
    """The export-only keys: library, format and the normalisation block's types and lengths (before any build)."""
    if meta.get("library_name") != "tam" or type(meta.get("format")) is not int or meta["format"] != FORMAT:
        raise TamError(f"{path}: not a tam model config (library_name {str(meta.get('library_name'))[:30]!r}, "
                       f"format {str(meta.get('format'))[:10]}; this tam reads format {FORMAT})")
    norm = meta.get("normalization")
    if not isinstance(norm, dict) or norm.get("mode") not in MODES or not _finite(norm.get("clip")):
        raise TamError(f"{path}: 'normalization' must hold mode (zscore | log1p | none), clip, mean and scale")
    for key in ("mean", "scale"):
        table = norm.get(key)
        if not isinstance(table, dict) or set(table) != set(dims):
            raise TamError(f"{path}: normalization.{key} must give a list for each modality {sorted(dims)}")
        for m, D in dims.items():
            v = table[m]
            if not isinstance(v, list) or len(v) != D or not all(_finite(x) for x in v):
                raise TamError(f"{path}: normalization.{key}.{m} must be {D} finite numbers")


def check_stats(model: torch.nn.Module, meta: dict, path: Path) -> None:
    """config.json's normalisation equals the loaded model's `norm.*` tensors (exactly, float32)."""
    norm, want = model.norm, meta["normalization"]
    if norm.mode != want["mode"] or float(norm.clip) != float(want["clip"]):
        raise TamError(f"{path}: normalization says {want['mode']} (clip {want['clip']}), the weights hold "
                       f"{norm.mode} (clip {float(norm.clip)})")
    for key in ("mean", "scale"):
        for m, v in want[key].items():
            if not torch.equal(getattr(norm, f"{key}_{m}").cpu(), torch.tensor(v, dtype=torch.float32)):
                raise TamError(f"{path}: normalization.{key}.{m} differs from norm.{key}_{m} in the weights")


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
