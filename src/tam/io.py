"""Atomic file writes: a killed writer never leaves a half-written file under the final name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` then rename the temporary file onto `path` (same folder, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file (UTF-8)."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write a JSON file (UTF-8, indented, keys in insertion order)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def cache_dir() -> Path:
    """Where derived files are kept between runs (converted models, parsed lexicons): $TAM_CACHE_DIR, else
    $XDG_CACHE_HOME/tam, else ~/.cache/tam."""
    if os.environ.get("TAM_CACHE_DIR"):
        return Path(os.environ["TAM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tam"
