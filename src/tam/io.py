"""Atomic file writes: a killed writer never leaves a half-written file under the final name."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tam.errors import TamError, first_line


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


def cached_json(name: str, digest: str, build: Callable[[], Any], parse: Callable[[Any], Any] = lambda v: v) -> Any:
    """`build()` (a JSON value), kept in `cache_dir()/<name>-<digest>.json` between runs: a cache file of the same
    digest gives `parse(its value)` instead; a missing, stale or unreadable one (or one whose value `parse`
    cannot read: ValueError, KeyError, TypeError, AttributeError) is built again, and a cache that cannot be
    written is skipped."""
    path = cache_dir() / f"{name}-{digest[:24]}.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d["digest"] == digest:
            return parse(d["value"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    value = build()
    try:
        write_json(path, {"digest": digest, "value": value})
    except OSError:
        pass
    return value


def file_tag(what: str, *files: Path) -> str:
    """A cache key for something derived from `files` (`what`: the format and anything else it depends on): a
    digest of `what` and each file's resolved path, size and modification time (cheap: no file is read)."""
    stats = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    return hashlib.sha1(json.dumps([what, *stats]).encode()).hexdigest()


def cached_arrays(name: str, digest: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`build()` (named numpy arrays), kept in `cache_dir()/<name>-<digest>/` between runs, one `.npy` file per
    array, and read back memory-mapped (read-only; processes that map the same files share their pages, and
    nothing is read until used). `names.json` is written last, so a folder without it is incomplete: a missing,
    incomplete or unreadable folder is built again; a cache that cannot be written is skipped (the built arrays
    are returned either way). Arrays only: `.npy` files are read with `allow_pickle=False`."""
    import shutil

    import numpy as np

    folder = cache_dir() / f"{name}-{digest[:24]}"
    try:
        names = json.loads((folder / "names.json").read_text(encoding="utf-8"))
        # plain read-only views of the maps (np.memmap's own indexing runs Python code on every access)
        return {k: np.asarray(np.load(folder / f"{k}.npy", mmap_mode="r", allow_pickle=False)) for k in names}
    except (OSError, ValueError, TypeError):
        pass
    arrays = build()
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        for k, a in arrays.items():
            np.save(tmp / f"{k}.npy", np.asarray(a), allow_pickle=False)
        (tmp / "names.json").write_text(json.dumps(list(arrays)), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete one
        os.replace(tmp, folder)  # atomic; fails when another process has just put its own there: keep that
    except OSError:
        pass
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return arrays


MAX_JSON_BYTES = 4 << 20
"""`read_json`'s default size cap (a checkpoint description or a run record is a few kB)."""


def read_json(path: str | os.PathLike, what: str = "checkpoint description", limit: int = MAX_JSON_BYTES) -> dict:
    """A JSON object from `path`, read with a size cap; any problem is a one-line TamError naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise TamError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(raw) > limit:
        raise TamError(f"{path}: {what} larger than {limit} bytes; refusing it")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TamError(f"{path}: {what} is not UTF-8 text") from None
    except (ValueError, RecursionError) as e:
        raise TamError(f"{path}: {what} is not valid JSON ({first_line(e, 120)})") from None
    if not isinstance(obj, dict):
        raise TamError(f"{path}: {what} must be a JSON object, got {type(obj).__name__}")
    return obj
