"""Where a model lives: a run directory, an exported folder, or a Hugging Face Hub repo id.

    resolve("runs/ve8")            -> ("run", runs/ve8)                    best.json + best.safetensors
    resolve("out/ve8-ctm")         -> ("export", out/ve8-ctm)              config.json + model.safetensors
    resolve("my-lab/ve8-ctm")      -> ("export", ~/.cache/.../snapshots/<sha>)   through huggingface_hub

A repo id is fetched with `huggingface_hub.snapshot_download` (only the model folder's files). With
`HF_HUB_OFFLINE=1` nothing is downloaded: the id must already be in the local cache (`HF_HUB_CACHE`, or
`HF_HOME/hub`), read at call time. Imports nothing of tam but its errors, so any stage may call it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tam.errors import TamError, first_line

CONFIG, WEIGHTS, CARD, ONNX = "config.json", "model.safetensors", "README.md", "model.onnx"
FILES = (CONFIG, WEIGHTS, CARD, ONNX)
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def resolve(source: str | os.PathLike, name: str = "best") -> tuple[str, Path]:
    """("run" | "export", local folder) for a run directory, an exported folder or a Hub repo id."""
    path = Path(source)
    if (path / f"{name}.json").is_file():
        return "run", path
    if (path / CONFIG).is_file():
        return "export", path
    if path.exists() or not REPO_ID.match(str(source)):
        raise TamError(f"{source}: no model here (neither a run directory with {name}.json + {name}.safetensors "
                       f"nor an exported folder with {CONFIG} + {WEIGHTS})")
    return "export", hub_folder(str(source))


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def cache_dir() -> Path:
    """The Hub cache, from the environment at call time (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/...)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return Path(home) / "hub"


def hub_folder(repo_id: str) -> Path:
    """The snapshot folder of `repo_id` (downloaded unless offline); a one-line TamError when it is unavailable."""
    from huggingface_hub import snapshot_download

    off, cache = offline(), cache_dir()
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=off, allow_patterns=list(FILES)))
    except Exception as e:  # noqa: BLE001 - huggingface_hub raises many types (network, validation, cache)
        where = f"the local cache {cache} (HF_HUB_OFFLINE=1)" if off else f"the Hub or the cache {cache}"
        raise TamError(f"{repo_id}: not a local folder, and not found in {where} ({type(e).__name__}: "
                       f"{first_line(e, 160)})") from None
    if not (folder / CONFIG).is_file():
        raise TamError(f"{folder}: the repo {repo_id} has no {CONFIG}; it is not a `tam export` model folder")
    return folder
