"""Checkpoints. A model is `NAME.safetensors` (weights) + `NAME.json` (everything needed to rebuild it), so a
run directory rebuilds its model alone. The resume state (`last.pt`: optimiser, scheduler, RNG, epoch) holds
only tensors and plain containers and is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tam.config import ModelConfig, from_dict
from tam.errors import TamError
from tam.io import atomic_write, write_json
from tam.models.model import AffectModel, build_model


def save_model(run_dir: str | Path, name: str, model: torch.nn.Module, meta: dict) -> None:
    """Write NAME.safetensors then NAME.json (the JSON last: a model is complete once its JSON exists)."""
    run_dir = Path(run_dir)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(run_dir / f"{name}.safetensors", lambda p: save_file(state, str(p)))
    write_json(run_dir / f"{name}.json", meta)


def load_model(run_dir: str | Path, name: str = "best", device: str | torch.device = "cpu") -> tuple[AffectModel, dict]:
    """Rebuild a model from `run_dir/NAME.json` and load its weights strictly."""
    run_dir = Path(run_dir)
    meta_path, weights = run_dir / f"{name}.json", run_dir / f"{name}.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise TamError(f"{run_dir}: no checkpoint {name!r} ({meta_path.name} + {weights.name})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    cfg = from_dict(ModelConfig, meta["model"])
    model = build_model(cfg, meta["dims"], meta["outputs"])
    model.load_state_dict(load_file(str(weights), device=str(device)), strict=True)
    return model.to(device).eval(), meta


def save_state(path: str | Path, state: dict) -> None:
    atomic_write(path, lambda p: torch.save(state, p))


def load_state(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
