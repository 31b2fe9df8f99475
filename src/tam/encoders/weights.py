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


RANDOM_INIT_HINT = "or pass --random-init for tests and demos (the features are then NOT real)"


def weights_error(what: str, problem: str, where: str) -> TamError:
    """One line: which encoder, what went wrong, where to get its weights, and --random-init as the last resort."""
    return TamError(f"{what}: {problem}; {where}, {RANDOM_INIT_HINT}")


def hub_problem(source: str, e: Exception) -> str:
    """Why a hub id could not be fetched, in words (offline without a cached copy is the common case)."""
    if type(e).__name__ == "LocalEntryNotFoundError":
        return f"{source} is not in the local Hugging Face cache and the hub cannot be reached (offline)"
    return f"cannot get {source} from the hub ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"


def resolve_file(spec: str, what: str, where: str) -> Path:
    """A local checkpoint file for `spec` (a path, or an http(s) URL downloaded once into the torch hub cache).

    `what` names the encoder and `where` says where to get its weights, for the error message.
    """
    if not spec:
        raise weights_error(what, "no weights given", where)
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
                raise weights_error(what, f"cannot download {spec} ({type(e).__name__}: {e})", where) from None
        return target
    raise weights_error(what, f"weights {spec} not found", where)


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
