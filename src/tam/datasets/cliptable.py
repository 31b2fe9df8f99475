"""Clip-level feature tables -> the feature store, so the same engine and metrics run on them.

Datasets often ship one row of hand-crafted features per clip: tab-separated `id name f1 f2 ...`
with values such as `5.41E+00`, with or without a header line. A small YAML file groups the
columns into named modalities::

    id_column: name            # the clip id (extension removed); default `name`, else the 2nd column
    duration_column: ""        # optional: a column holding the clip duration in seconds
    modalities:
      audio: [f1..f40]         # a column name, `first..last` (inclusive, header order) or a 1-based
      visual: [f41..f80, 85]   #   index among the feature columns

Header-less tables name their columns `id`, `name`, `f1`, `f2`, ... Each clip becomes one store
entry with T = 1 and times [[0, duration]] ([[0, 0]] when unknown). Each modality's encoder is
`table:<file>` with the file's sha256 as its weights identity. Structurally malformed lines are
errors naming file and line; clips with NaN/Inf values are skipped and listed in the summary.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from tam.datasets.common import fields, read_lines, strip_video_ext
from tam.errors import TamError

GROUP_KEYS = {"id_column", "duration_column", "modalities"}


@dataclass
class ClipTable:
    """A parsed table: column names, the id column, and the numeric rows (NaN where a value is not finite)."""

    path: Path
    columns: list[str]
    ids: list[str]
    lines: list[int]
    values: dict[str, np.ndarray]  # column name -> float64 [N] for numeric columns


@dataclass
class ImportReport:
    written: int = 0
    present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)


def load_groups(path: str | os.PathLike) -> dict:
    """Read and check the grouping YAML (see the module docstring)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise TamError(f"{path}: cannot read grouping config ({e.__class__.__name__})") from None
    if not isinstance(data, dict) or set(data) - GROUP_KEYS:
        got = sorted(data) if isinstance(data, dict) else repr(data)
        raise TamError(f"{path}: keys must be among {sorted(GROUP_KEYS)}, got {got}")
    mods = data.get("modalities")
    if not isinstance(mods, dict) or not mods:
        raise TamError(f"{path}: `modalities` must map modality names to lists of columns")
    for m, spec in mods.items():
        if not isinstance(spec, list) or not spec or not all(isinstance(s, str | int) for s in spec):
            raise TamError(f"{path}: modality {m!r} must be a non-empty list of column names, ranges or indices")
    return data


def read_table(path: str | os.PathLike, id_column: str = "name") -> ClipTable:
    """Parse a clip-level table; `id_column` names the id (falls back to the 2nd column, or the 1st of two)."""
    path = Path(path)
    lines = read_lines(path)
    if not lines:
        raise TamError(f"{path}: empty table")
    first = _split(lines[0][1])
    if _is_number(first[-1]):
        columns = ["id", "name"] + [f"f{i}" for i in range(1, len(first) - 1)]
    else:
        columns, lines = first, lines[1:]
    if len(set(columns)) != len(columns):
        raise TamError(f"{path}:1: duplicate column names in the header")
    id_idx = columns.index(id_column) if id_column in columns else min(1, len(columns) - 1)
    rows, ids, nums = [], [], []
    for lineno, line in lines:
        parts = _split(line)
        if len(parts) != len(columns):
            raise TamError(f"{path}:{lineno}: expected {len(columns)} columns, got {len(parts)}")
        rows.append(lineno)
        ids.append(strip_video_ext(parts[id_idx]))
        nums.append(parts)
    values = {}
    for j, c in enumerate(columns):
        if j == id_idx:
            continue
        col = [_number(r[j]) for r in nums]
        if all(v is None for v in col) and not _looks_numeric_column(c):
            continue  # a text column (e.g. `id` as a name): not a feature
        bad = next((i for i, v in enumerate(col) if v is None), None)
        if bad is not None:
            raise TamError(f"{path}:{rows[bad]}: column {c!r} is not a number: {nums[bad][j]!r}")
        values[c] = np.asarray(col, dtype=np.float64)
    if not ids:
        raise TamError(f"{path}: no rows")
    return ClipTable(path, columns, ids, rows, values)


def _split(line: str) -> list[str]:
    return fields(line, "\t") if "\t" in line else fields(line)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _is_number(text: str) -> bool:
    return _number(text) is not None


def _looks_numeric_column(name: str) -> bool:
    return name.startswith("f") and name[1:].isdigit()


def resolve_groups(table: ClipTable, modalities: dict[str, list], exclude: tuple[str, ...] = ("id",)
                   ) -> dict[str, list[str]]:
    """Modality -> column names, from the YAML spec; unknown, reversed or shared columns are errors."""
    feats = [c for c in table.columns if c in table.values and c not in exclude]
    pos = {c: i for i, c in enumerate(feats)}
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for m, spec in modalities.items():
        cols: list[str] = []
        for item in spec:
            cols += _expand(item, feats, pos, table.path, m)
        for c in cols:
            if c in owner:
                raise TamError(f"{table.path}: column {c!r} is given to both {owner[c]!r} and {m!r}")
            owner[c] = m
        out[str(m)] = cols
    return out


def _expand(item: str | int, feats: list[str], pos: dict[str, int], path: Path, m: str) -> list[str]:
    if isinstance(item, int):
        if not 1 <= item <= len(feats):
            raise TamError(f"{path}: modality {m!r}: index {item} outside 1..{len(feats)} feature columns")
        return [feats[item - 1]]
    if item in pos:
        return [item]
    if ".." in item:
        a, b = (s.strip() for s in item.split("..", 1))
        if a not in pos or b not in pos:
            missing = a if a not in pos else b
            raise TamError(f"{path}: modality {m!r}: no feature column {missing!r} (have {feats[0]}..{feats[-1]})")
        if pos[a] > pos[b]:
            raise TamError(f"{path}: modality {m!r}: range {item!r} runs backwards")
        return feats[pos[a]: pos[b] + 1]
    raise TamError(f"{path}: modality {m!r}: no feature column {item!r} (have {feats[0]}..{feats[-1]})")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def table_manifest(table: ClipTable, groups: dict[str, list[str]], spec: dict[str, list]):
    """The store manifest for a table import: one `table:<file>` encoder per modality."""
    from tam.features.store import Encoder, Manifest

    sha = file_sha256(table.path)
    encoders = {m: Encoder(name=f"table:{table.path.name}", dim=len(cols), weights_sha256=sha,
                           preprocessing="clip-level columns " + ",".join(str(s) for s in spec[m]))
                for m, cols in groups.items()}
    return Manifest(encoders=encoders, segment="clip-level (T = 1)")


def import_table(table_path: str | os.PathLike, groups_path: str | os.PathLike, store_dir: str | os.PathLike,
                 overwrite: bool = False, progress: bool = False) -> ImportReport:
    """Write every clip of the table into the store (created or reopened); re-runs skip clips present."""
    from tqdm import tqdm

    from tam.features.store import FeatureStore

    cfg = load_groups(groups_path)
    duration = cfg.get("duration_column") or ""
    table = read_table(table_path, cfg.get("id_column") or "name")
    if duration and duration not in table.values:
        raise TamError(f"{groups_path}: duration column {duration!r} is not a numeric column of {table.path}")
    groups = resolve_groups(table, cfg["modalities"], exclude=("id", duration) if duration else ("id",))
    store = FeatureStore.create(store_dir, table_manifest(table, groups, cfg["modalities"]))
    report = ImportReport()
    seen: set[str] = set()
    for i in tqdm(range(len(table.ids)), desc="import", unit="clip", disable=not progress):
        vid = table.ids[i]
        if vid in seen:
            raise TamError(f"{table.path}:{table.lines[i]}: clip {vid!r} appears twice")
        seen.add(vid)
        if store.has(vid) and not overwrite:
            report.present += 1
            continue
        feats = {m: np.asarray([[table.values[c][i] for c in cols]], dtype=np.float32) for m, cols in groups.items()}
        bad = [m for m, a in feats.items() if not np.all(np.isfinite(a))]
        end = float(table.values[duration][i]) if duration else 0.0
        if bad or not math.isfinite(end):
            report.skipped.append((vid, f"line {table.lines[i]}: non-finite values in {bad or [duration]}"))
            continue
        store.write(vid, feats, np.array([[0.0, end]]), extra={"source": f"table:{table.path.name}",
                                                               "line": table.lines[i]}, overwrite=overwrite)
        report.written += 1
    return report
