"""A user's own dataset: a CSV (or TSV) of video id or path, label (or valence and arousal), optional split.

With a header, columns are found by name: `video` (or `id`) or `path`; `label` or `valence` and
`arousal`; `split` (train / val / test, empty = train). Without a header the columns are, by count:
`video,label`, `video,label,split`, `video,valence,arousal` (two numbers) or
`video,valence,arousal,split`. A `path` is turned into an id relative to `root` when given, with
forward slashes and no video extension, the same rule the VE-8 scan uses (`Class/name`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from tam.datasets.common import SPLITS, LabelRow, LabelSet, dedupe, parse_float, read_lines, video_id
from tam.errors import TamError

VIDEO_COLUMNS = ("video", "id", "path")


def read_custom(path: str | os.PathLike, root: str | os.PathLike | None = None) -> LabelSet:
    """Parse a custom labels file; classes are the sorted label names."""
    path = Path(path)
    lines = read_lines(path)
    if not lines:
        raise TamError(f"{path}: empty file")
    delim = "\t" if "\t" in lines[0][1] and "," not in lines[0][1] else ","
    records = [(n, [f.strip() for f in rec]) for (n, _), rec in zip(lines, csv.reader([s for _, s in lines],
                                                                                         delimiter=delim))]
    header = [h.lower() for h in records[0][1]]
    if any(h in VIDEO_COLUMNS for h in header):
        cols, records = _columns_from_header(path, header), records[1:]
    else:
        cols = _columns_from_count(path, records[0])
    regression = "valence" in cols
    notes: list[str] = []
    rows = dedupe(((_row(path, n, rec, cols, regression, root), f"{path}:{n}") for n, rec in records), notes)
    if not rows:
        raise TamError(f"{path}: no rows")
    classes = [] if regression else sorted({r.label for r in rows})
    return LabelSet("regression" if regression else "classification", rows, classes, notes)


def _columns_from_header(path: Path, header: list[str]) -> dict[str, int]:
    cols = {h: i for i, h in enumerate(header)}
    vid = next(c for c in VIDEO_COLUMNS if c in cols)
    out = {"video": cols[vid], "is_path": int(vid == "path")}
    if "label" in cols:
        out["label"] = cols["label"]
    elif "valence" in cols and "arousal" in cols:
        out["valence"], out["arousal"] = cols["valence"], cols["arousal"]
    else:
        raise TamError(f"{path}:1: header needs `label` or `valence` and `arousal`, got {header}")
    if "split" in cols:
        out["split"] = cols["split"]
    return out


def _columns_from_count(path: Path, first: tuple[int, list[str]]) -> dict[str, int]:
    lineno, rec = first
    n = len(rec)
    if n == 2:
        return {"video": 0, "label": 1, "is_path": 0}
    if n == 3 and (rec[2].lower() in SPLITS or rec[2] == ""):
        return {"video": 0, "label": 1, "split": 2, "is_path": 0}
    if n == 3:
        return {"video": 0, "valence": 1, "arousal": 2, "is_path": 0}
    if n == 4:
        return {"video": 0, "valence": 1, "arousal": 2, "split": 3, "is_path": 0}
    raise TamError(f"{path}:{lineno}: cannot tell the columns of a header-less file with {n} fields; add a header")


def _row(path: Path, lineno: int, rec: list[str], cols: dict[str, int], regression: bool,
         root: str | os.PathLike | None) -> LabelRow:
    need = max(v for k, v in cols.items() if k not in ("is_path", "split"))
    if len(rec) <= need:
        raise TamError(f"{path}:{lineno}: expected at least {need + 1} fields, got {len(rec)}")
    video = rec[cols["video"]]
    if not video:
        raise TamError(f"{path}:{lineno}: empty video id")
    if cols["is_path"]:
        video = _path_to_id(video, root)
    split = (rec[cols["split"]] if "split" in cols and cols["split"] < len(rec) else "").lower() or "train"
    if split not in SPLITS:
        raise TamError(f"{path}:{lineno}: split must be one of {SPLITS} or empty, got {split!r}")
    if regression:
        return LabelRow(video, valence=parse_float(rec[cols["valence"]], path, lineno, "valence"),
                        arousal=parse_float(rec[cols["arousal"]], path, lineno, "arousal"), split=split)
    label = rec[cols["label"]]
    if not label:
        raise TamError(f"{path}:{lineno}: empty label")
    return LabelRow(video, label=label, split=split)


def _path_to_id(text: str, root: str | os.PathLike | None) -> str:
    p = Path(text)
    if root is not None:
        r = Path(root)
        full = p if p.is_absolute() else r / p
        try:
            return video_id(full.resolve().relative_to(r.resolve()).as_posix())
        except ValueError:
            raise TamError(f"{text}: path is not under the dataset root {root}") from None
    return video_id(p.as_posix())
