"""LIRIS-ACCEDE (Baveye et al.) and its two MediaEval tasks, as used in the paper's Table 6.

Files read (tab-separated; a header line is optional; LF, CRLF or CR line endings):

- `ACCEDEranking.txt`: id, name, valenceRank, arousalRank, valenceValue, arousalValue,
  valenceVariance, arousalVariance (9,800 clips).
- `ACCEDEsets.txt`: id, name, set with 0 = test, 1 = learning, 2 = validation.
- MediaEval 2015 (classification): labels `id name valenceClass arousalClass` with classes −1/0/1,
  and the dev/test lists `shots-devset-nl.txt` / `shots-testset-nl.txt` (6,144 / 4,756 clips),
  one name per line (or `id name`). Two tasks: valence class and arousal class.
- MediaEval 2016 (regression): train on the 9,800 ranked clips (valenceValue, arousalValue), test
  ground truth `MEDIAEVAL16-Global_prediction.txt` (no header, `name valence arousal`).

Videos are keyed by `name` without its extension (`ACCEDE00001.mp4` -> `ACCEDE00001`).
"""

from __future__ import annotations

import os
from pathlib import Path

from tam.datasets.common import (
    LabelRow,
    LabelSet,
    dedupe,
    fields,
    parse_float,
    parse_int,
    read_lines,
    strip_video_ext,
)
from tam.errors import TamError

RANKING_COLUMNS = ["id", "name", "valenceRank", "arousalRank", "valenceValue", "arousalValue",
                   "valenceVariance", "arousalVariance"]
SETS_COLUMNS = ["id", "name", "set"]
ME15_COLUMNS = ["id", "name", "valenceClass", "arousalClass"]
SET_NAMES = {0: "test", 1: "train", 2: "val"}
VALENCE_CLASSES = ["negative", "neutral", "positive"]  # valenceClass -1, 0, 1
AROUSAL_CLASSES = ["calm", "neutral", "active"]  # arousalClass -1, 0, 1
EXPECTED = {"mediaeval2015": (6144, 4756), "mediaeval2016": (9800, 1200)}


def read_table(path: str | os.PathLike, columns: list[str]) -> list[tuple[int, list[str]]]:
    """Rows of a tab- (or whitespace-) separated table with these columns; a header line is skipped."""
    path = Path(path)
    lines = read_lines(path)
    if not lines:
        raise TamError(f"{path}: empty file")
    if [f.lower() for f in _split(lines[0][1])[: len(columns)]] == [c.lower() for c in columns]:
        lines = lines[1:]
    rows = []
    for lineno, line in lines:
        parts = _split(line)
        if len(parts) != len(columns):
            raise TamError(f"{path}:{lineno}: expected {len(columns)} columns ({' '.join(columns)}), "
                           f"got {len(parts)}")
        rows.append((lineno, parts))
    return rows


def _split(line: str) -> list[str]:
    return fields(line, "\t") if "\t" in line else fields(line)


def read_ranking(path: str | os.PathLike) -> list[tuple[LabelRow, str]]:
    """`ACCEDEranking.txt` -> regression rows (valenceValue, arousalValue), split `train`."""
    out = []
    for lineno, p in read_table(path, RANKING_COLUMNS):
        v = parse_float(p[4], path, lineno, "valenceValue")
        a = parse_float(p[5], path, lineno, "arousalValue")
        out.append((LabelRow(strip_video_ext(p[1]), valence=v, arousal=a), f"{path}:{lineno}"))
    return out


def read_sets(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """`ACCEDEsets.txt` -> {video: (split, `file:line`)}."""
    out: dict[str, tuple[str, str]] = {}
    for lineno, p in read_table(path, SETS_COLUMNS):
        k = parse_int(p[2], path, lineno, "set")
        if k not in SET_NAMES:
            raise TamError(f"{path}:{lineno}: set must be 0 (test), 1 (learning) or 2 (validation), got {k}")
        name = strip_video_ext(p[1])
        if name in out and out[name][0] != SET_NAMES[k]:
            raise TamError(f"{path}:{lineno}: {name!r} already in set {out[name][0]} at {out[name][1]}")
        out.setdefault(name, (SET_NAMES[k], f"{path}:{lineno}"))
    return out


def liris_accede(ranking: str | os.PathLike, sets: str | os.PathLike) -> LabelSet:
    """LIRIS-ACCEDE's own protocol: regression on valence/arousal values with its learning/validation/test sets."""
    split_of = read_sets(sets)
    notes: list[str] = []
    rows = []
    for row, where in read_ranking(ranking):
        if row.video not in split_of:
            raise TamError(f"{where}: {row.video!r} has no set in {sets}")
        rows.append((LabelRow(row.video, valence=row.valence, arousal=row.arousal,
                              split=split_of[row.video][0]), where))
    ranked = {r.video for r, _ in rows}
    extra = [n for n in split_of if n not in ranked]
    if extra:
        notes.append(f"{len(extra)} clip(s) of {sets} have no ranking and are left out (first: {extra[0]})")
    return LabelSet("regression", dedupe(rows, notes), [], notes)


def read_name_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    """A clip list: one `name` (or `id name`) per line -> [(video, `file:line`)]."""
    out = []
    for lineno, line in read_lines(path):
        p = _split(line)
        if len(p) == 2 and p[0].isdigit():
            p = p[1:]
        if len(p) != 1:
            raise TamError(f"{path}:{lineno}: expected one clip name per line, got {line!r}")
        out.append((strip_video_ext(p[0]), f"{path}:{lineno}"))
    if not out:
        raise TamError(f"{path}: empty list")
    return out


def mediaeval2015(labels: str | os.PathLike, devset: str | os.PathLike, testset: str | os.PathLike
                  ) -> dict[str, LabelSet]:
    """MediaEval 2015 affective task -> {"valence": LabelSet, "arousal": LabelSet} (classification)."""
    classes = {}
    for lineno, p in read_table(labels, ME15_COLUMNS):
        vc = _me15_class(p[2], labels, lineno, "valenceClass")
        ac = _me15_class(p[3], labels, lineno, "arousalClass")
        name = strip_video_ext(p[1])
        if name in classes and classes[name][:2] != (vc, ac):
            raise TamError(f"{labels}:{lineno}: {name!r} already labelled differently at {classes[name][2]}")
        classes.setdefault(name, (vc, ac, f"{labels}:{lineno}"))
    out = {}
    for task, col, names in (("valence", 0, VALENCE_CLASSES), ("arousal", 1, AROUSAL_CLASSES)):
        notes: list[str] = []
        rows = []
        for split, lst in (("train", devset), ("test", testset)):
            for name, where in read_name_list(lst):
                if name not in classes:
                    raise TamError(f"{where}: no labels for {name!r} in {labels}")
                rows.append((LabelRow(name, label=names[classes[name][col] + 1], split=split), where))
        out[task] = LabelSet("classification", dedupe(rows, notes), list(names), notes)
    _note_counts(out["valence"], "mediaeval2015")
    return out


def _me15_class(text: str, path, lineno: int, what: str) -> int:
    k = parse_int(text, path, lineno, what)
    if k not in (-1, 0, 1):
        raise TamError(f"{path}:{lineno}: {what} must be -1, 0 or 1, got {k}")
    return k


def read_global_prediction(path: str | os.PathLike) -> list[tuple[LabelRow, str]]:
    """`MEDIAEVAL16-Global_prediction.txt`: `name valence arousal` lines (no header) -> test rows."""
    out = []
    for lineno, line in read_lines(path):
        p = _split(line)
        if len(p) != 3:
            raise TamError(f"{path}:{lineno}: expected `name valence arousal`, got {line!r}")
        v = parse_float(p[1], path, lineno, "valence")
        a = parse_float(p[2], path, lineno, "arousal")
        out.append((LabelRow(strip_video_ext(p[0]), valence=v, arousal=a, split="test"), f"{path}:{lineno}"))
    if not out:
        raise TamError(f"{path}: empty file")
    return out


def mediaeval2016(ranking: str | os.PathLike, test_truth: str | os.PathLike) -> LabelSet:
    """MediaEval 2016 global task: train on the ranked clips, test on the global ground truth (regression)."""
    notes: list[str] = []
    rows = dedupe(read_ranking(ranking) + read_global_prediction(test_truth), notes)
    labels = LabelSet("regression", rows, [], notes)
    _note_counts(labels, "mediaeval2016")
    return labels


def _note_counts(labels: LabelSet, task: str) -> None:
    n = labels.count()
    want = EXPECTED[task]
    if (n["train"], n["test"]) != want:
        labels.notes.append(f"{n['train']}/{n['test']} train/test clips; {task} has {want[0]}/{want[1]}")
