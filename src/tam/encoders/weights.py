"""Finding and reading encoder weights: a local file or folder first, a URL or hub id second.

Checkpoints are read with `torch.load(weights_only=True)` (no code runs while loading); weight identities
are sha256 digests written into the feature store's manifest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tam.errors import TamError


def sha256_of(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder's weight files (sorted names and contents)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".pth", ".pt", ".json"))
    h = hashlib.sha256()
    for f in files:
        if len(files) > 1:
            h.update(f.relative_to(path).as_posix().encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def resolve_file(spec: str, what: str, where: str) -> Path:
    """A local checkpoint file for `spec` (a path, or an http(s) URL downloaded once into the torch hub cache).

    `what` names the encoder and `where` says where to get its weights, for the error message.
    """
    if not spec:
        raise TamError(f"{what}: no weights given; {where} (or pass --random-init for tests and demos)")
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if spec.startswith(("http://", "https://")):
        import torch

        target = Path(torch.hub.get_dir()) / "checkpoints" / spec.rsplit("/", 1)[-1]
        if not target.is_file():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(spec, str(target), progress=False)
            except Exception as e:  # network errors come in many types
                raise TamError(f"{what}: cannot download {spec} ({type(e).__name__}: {e}); {where}") from None
        return target
    raise TamError(f"{what}: weights {spec} not found; {where}")


def load_torch_state(path: str | os.PathLike) -> dict:
    """A state dict from a `.pth`: plain, or wrapped as {'state_dict': ...}; a `module.` prefix is stripped."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise TamError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise TamError(f"{path}: expected a state dict of tensors (or {{'state_dict': ...}})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_strict(model, state: dict, path: str | os.PathLike, what: str) -> None:
    """`model.load_state_dict(state, strict=True)` with a one-line error listing the mismatching keys."""
    missing, unexpected = _diff(model, state)
    if missing or unexpected:
        raise TamError(f"{path}: does not fit {what}: missing {_few(missing)}, unexpected {_few(unexpected)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise TamError(f"{path}: does not fit {what}: {str(e).splitlines()[-1].strip()[:300]}") from None


def _diff(model, state: dict) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    optional = {k for k in expected if k.endswith("num_batches_tracked")}  # absent in pre-1.0 checkpoints
    return sorted(expected - set(state) - optional), sorted(set(state) - expected)


def _few(keys: list[str]) -> str:
    return "none" if not keys else ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
