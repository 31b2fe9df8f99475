"""VideoEmotion-8 (Jiang et al., AAAI 2014): `<root>/<Class>/<video>`, 8 classes.

Protocol (paper, section 5.1): 10 random splits, 2/3 train and 1/3 test, results as mean ± std.
Videos are keyed `Class/name` (no extension): one name sits in two class folders. Three sources of
splits are read: a folder scan plus our seeded generator (`make_splits`), lists in the common format
(`Class/name label`, labels 1–8; test lists may have no label), and the dataset's own workbook of
10 splits (one sheet per split; train names in column C, test names in column D, from row 3).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from tam.datasets.common import (
    VIDEO_EXTENSIONS,
    LabelRow,
    LabelSet,
    dedupe,
    labels_from_class_lists,
    read_class_index,
    strip_video_ext,
)
from tam.errors import TamError

CLASSES = ["Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness", "Surprise", "Trust"]
"""VE-8's classes in the order of its label indices 1..8."""


def scan(root: str | os.PathLike) -> list[tuple[str, str]]:
    """(video id `Class/name`, class) for every video file in the class folders under `root`, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise TamError(f"{root}: VE-8 root folder not found")
    canon = {c.lower(): c for c in CLASSES}
    items, files = [], {}
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.lower() not in canon:
            continue
        for f in sorted(d.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in VIDEO_EXTENSIONS:
                vid = f"{d.name}/{strip_video_ext(f.name)}"
                if vid in files:
                    raise TamError(f"{f}: same video id {vid!r} as {files[vid]}; rename one of them")
                files[vid] = f
                items.append((vid, canon[d.name.lower()]))
    if not items:
        raise TamError(f"{root}: no videos in class folders {CLASSES}")
    return items


def from_lists(train: str | os.PathLike, test: str | os.PathLike, class_index: str | os.PathLike | None = None
               ) -> LabelSet:
    """Train/test lists in the common format (`Class/name label`; test labels optional)."""
    classes = read_class_index(class_index) if class_index else list(CLASSES)
    return labels_from_class_lists(train, test, classes)


def make_splits(root: str | os.PathLike, out: str | os.PathLike, n_splits: int = 10, seed: int = 0,
                train_fraction: float = 2 / 3) -> list[Path]:
    """Scan `root`, draw the seeded class-balanced splits and write them under `out`; returns the CSVs."""
    from tam.eval.protocols import stratified_splits, write_split_set

    items = scan(root)
    splits = stratified_splits(items, n_splits, train_fraction, seed)
    meta = {"dataset": "ve8", "seed": seed, "train_fraction": train_fraction,
            "generator": "tam.eval.protocols.stratified_splits"}
    return write_split_set(out, "ve8", CLASSES, items, splits, meta)


def read_workbook(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[LabelSet]:
    """The dataset's workbook of splits: one `LabelSet` per sheet, in sheet order.

    Cells hold `Class/name` or a bare name; a bare name is looked up in the class folders under
    `root`. A bare name found in k class folders must occur k times in the sheet; its occurrences,
    in reading order (row by row, C before D), take those classes in alphabetical order.
    """
    import openpyxl

    path = Path(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises many types for a bad file
        raise TamError(f"{path}: cannot read workbook ({e.__class__.__name__}: {e})") from None
    index = _name_index(scan(root)) if root else None
    out = []
    for sheet in wb.worksheets:
        cells = _sheet_names(path, sheet)
        if not cells:
            raise TamError(f"{path}: sheet {sheet.title!r} has no names in columns C/D from row 3")
        notes: list[str] = []
        rows = dedupe(_resolve(cells, index), notes)
        out.append(LabelSet("classification", rows, list(CLASSES), notes))
    wb.close()
    if not out:
        raise TamError(f"{path}: workbook has no sheets")
    return out


def _sheet_names(path: Path, sheet) -> list[tuple[str, str, str]]:
    """(name, split, `file[sheet]!C7`) for every non-empty cell of columns C (train) and D (test)."""
    cells = []
    for r, row in enumerate(sheet.iter_rows(min_row=3, min_col=3, max_col=4, values_only=True), 3):
        for value, split, col in zip(row, ("train", "test"), "CD"):
            text = "" if value is None else str(value).strip()
            if text:
                cells.append((text, split, f"{path}[{sheet.title}]!{col}{r}"))
    return cells


def _name_index(items: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """bare name -> [(class, video id as on disk)], sorted by class."""
    index: dict[str, list[tuple[str, str]]] = {}
    for vid, cls in items:
        index.setdefault(vid.split("/", 1)[1], []).append((cls, vid))
    return {k: sorted(v) for k, v in index.items()}


def _resolve(cells: list[tuple[str, str, str]], index: dict[str, list[tuple[str, str]]] | None
             ) -> list[tuple[LabelRow, str]]:
    canon = {c.lower(): c for c in CLASSES}
    seen: Counter = Counter()
    totals = Counter(strip_video_ext(n) for n, _, _ in cells if "/" not in n.replace("\\", "/"))
    out = []
    for text, split, where in cells:
        rel = text.replace("\\", "/").strip("/")
        if "/" in rel:
            folder, name = rel.rsplit("/", 1)
            cls = canon.get(folder.split("/")[-1].lower())
            if cls is None:
                raise TamError(f"{where}: folder of {text!r} is not a VE-8 class {CLASSES}")
            out.append((LabelRow(f"{folder.split('/')[-1]}/{strip_video_ext(name)}", cls, split=split), where))
            continue
        name = strip_video_ext(rel)
        if index is None:
            raise TamError(f"{where}: bare name {text!r}; pass the VE-8 root so its class folder can be found")
        found = index.get(name, [])
        classes = [c for c, _ in found]
        if not found:
            raise TamError(f"{where}: video {text!r} is in no class folder under the VE-8 root")
        if len(classes) > 1 and totals[name] != len(classes):
            raise TamError(f"{where}: {text!r} is in {len(classes)} class folders {classes} but occurs "
                           f"{totals[name]} time(s) in the sheet; write it as Class/name")
        cls, vid = found[seen[name]]
        seen[name] += 1
        out.append((LabelRow(vid, cls, split=split), where))
    return out
