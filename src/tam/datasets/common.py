"""What every dataset parser shares: reading list files, label rows, and the engine's labels CSV.

The engine reads one labels CSV per split/fold (UTF-8, header row)::

    video,label,split               classification (label = class name; data.classes gives the order)
    video,valence,arousal,split     regression

`split` is `train`, `val` or `test` (empty = train). Parsers return a `LabelSet`; `write_labels_csv`
writes it atomically. List files may use LF, CRLF or CR line endings and may start with a BOM;
a malformed line raises `TamError("<file>:<line>: <problem>")`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tam.errors import TamError
from tam.io import write_text

SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".flv", ".mkv", ".webm", ".mov", ".wmv", ".m4v", ".mpg", ".mpeg", ".3gp",
                    ".ts", ".f4v", ".rmvb")


@dataclass(frozen=True)
class LabelRow:
    """One video of a split: a class name (classification) or valence/arousal values (regression)."""

    video: str
    label: str | None = None
    valence: float | None = None
    arousal: float | None = None
    split: str = "train"


@dataclass
class LabelSet:
    """Rows of one split/fold, the task, the class order, and notes for the user (duplicates dropped...)."""

    task: str  # classification | regression
    rows: list[LabelRow]
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self) -> dict[str, int]:
        """Number of rows per split."""
        c = Counter(r.split for r in self.rows)
        return {s: c.get(s, 0) for s in SPLITS}


# ---- reading text ---------------------------------------------------------------------------------
def read_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Non-blank lines of a text file as (1-based line number, stripped text); any line ending, BOM allowed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TamError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise TamError(f"{path}:{line}: not UTF-8 text (byte {e.start})") from None
    return [(i, s.strip()) for i, s in enumerate(text.splitlines(), 1) if s.strip()]


def fields(line: str, sep: str | None = None) -> list[str]:
    """Split a line on `sep` (None: any whitespace), stripping each field."""
    return [f.strip() for f in line.split(sep)] if sep else line.split()


def parse_float(text: str, path: Path | str, lineno: int, what: str) -> float:
    """A finite float (`5.41E+00` style allowed) or a TamError naming file, line and column."""
    try:
        value = float(text)
    except ValueError:
        raise TamError(f"{path}:{lineno}: {what} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise TamError(f"{path}:{lineno}: {what} is not finite: {text!r}")
    return value


def parse_int(text: str, path: Path | str, lineno: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TamError(f"{path}:{lineno}: {what} is not an integer: {text!r}") from None


def strip_video_ext(name: str) -> str:
    """`ACCEDE00001.mp4` -> `ACCEDE00001`, `a.avi.mp4` -> `a` (all trailing video extensions); others unchanged.

    Stripping every trailing extension makes a list entry `a.avi` and a file `a.avi.mp4` the same id.
    """
    while True:
        low = name.lower()
        ext = next((e for e in VIDEO_EXTENSIONS if low.endswith(e) and len(name) > len(e)), None)
        if ext is None:
            return name
        name = name[: -len(ext)]


def video_id(rel: str) -> str:
    """Feature-store id for a path relative to a dataset root: forward slashes, no video extension."""
    return strip_video_ext(rel.replace("\\", "/").strip("/"))


# ---- rows ---------------------------------------------------------------------------------------
def dedupe(rows: Iterable[tuple[LabelRow, str]], notes: list[str]) -> list[LabelRow]:
    """Drop identical repeats of a video; a video with two different labels or splits is an error.

    `rows` pairs each row with where it came from (`file:line`), used in the error message.
    """
    seen: dict[str, tuple[LabelRow, str]] = {}
    out: list[LabelRow] = []
    dropped = []
    for row, where in rows:
        if row.video in seen:
            first, first_where = seen[row.video]
            if first != row:
                what = "split" if first.split != row.split else "label"
                raise TamError(f"{where}: video {row.video!r} already listed at {first_where} "
                               f"with another {what} ({_describe(first)} vs {_describe(row)})")
            dropped.append(where)
            continue
        seen[row.video] = (row, where)
        out.append(row)
    if dropped:
        notes.append(f"{len(dropped)} duplicate line(s) dropped (first: {dropped[0]})")
    return out


def _describe(row: LabelRow) -> str:
    value = row.label if row.label is not None else f"valence={row.valence}, arousal={row.arousal}"
    return f"{row.split}: {value}"


def label_from_index(text: str, classes: list[str], path: Path | str, lineno: int) -> str:
    """1-based class index (as in classInd.txt lists) -> class name."""
    k = parse_int(text, path, lineno, "label")
    if not 1 <= k <= len(classes):
        raise TamError(f"{path}:{lineno}: label {k} is outside 1..{len(classes)}")
    return classes[k - 1]


# ---- the engine's labels CSV ----------------------------------------------------------------------
def labels_csv_text(labels: LabelSet) -> str:
    """The CSV text the engine reads, rows in the given order."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if labels.task == "classification":
        w.writerow(["video", "label", "split"])
        w.writerows([r.video, r.label, r.split] for r in labels.rows)
    else:
        w.writerow(["video", "valence", "arousal", "split"])
        w.writerows([r.video, repr(float(r.valence)), repr(float(r.arousal)), r.split] for r in labels.rows)
    return buf.getvalue()


def write_labels_csv(path: str | os.PathLike, labels: LabelSet) -> bool:
    """Atomically write `labels` as the engine's CSV; return False (and write nothing) if identical already."""
    if not labels.rows:
        raise TamError(f"{path}: refusing to write an empty labels file")
    text = labels_csv_text(labels)
    path = Path(path)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


def read_labels_csv(path: str | os.PathLike) -> LabelSet:
    """Read a labels CSV written by `write_labels_csv` (or by hand, same columns)."""
    path = Path(path)
    lines = read_lines(path)
    if not lines:
        raise TamError(f"{path}: empty labels file")
    reader = csv.reader([s for _, s in lines])
    header = [h.strip().lower() for h in next(reader)]
    regression = "valence" in header
    need = ["video", "valence", "arousal"] if regression else ["video", "label"]
    if any(n not in header for n in need):
        raise TamError(f"{path}:1: header must hold {need} (+ split), got {header}")
    idx = {h: i for i, h in enumerate(header)}
    rows = []
    for (lineno, _), rec in zip(lines[1:], reader):
        if len(rec) < len(need):
            raise TamError(f"{path}:{lineno}: expected columns {header}, got {len(rec)} field(s)")
        split = rec[idx["split"]].strip() if "split" in idx and idx["split"] < len(rec) else ""
        split = split or "train"
        if split not in SPLITS:
            raise TamError(f"{path}:{lineno}: split must be one of {SPLITS}, got {split!r}")
        if regression:
            v = parse_float(rec[idx["valence"]], path, lineno, "valence")
            a = parse_float(rec[idx["arousal"]], path, lineno, "arousal")
            rows.append(LabelRow(rec[idx["video"]].strip(), valence=v, arousal=a, split=split))
        else:
            rows.append(LabelRow(rec[idx["video"]].strip(), label=rec[idx["label"]].strip(), split=split))
    task = "regression" if regression else "classification"
    classes = sorted({r.label for r in rows}) if not regression else []
    return LabelSet(task, rows, classes)


def summary_table(labels: LabelSet) -> str:
    """Counts per class (or in total for regression) and split, as a small aligned text table."""
    counts = Counter((r.label if labels.task == "classification" else "all", r.split) for r in labels.rows)
    keys = labels.classes if labels.task == "classification" else ["all"]
    keys = list(keys) + sorted({k for k, _ in counts} - set(keys))
    width = max([len(k) for k in keys] + [5])
    lines = ["class".ljust(width) + "".join(s.rjust(8) for s in SPLITS)]
    for k in keys:
        lines.append(k.ljust(width) + "".join(str(counts.get((k, s), 0)).rjust(8) for s in SPLITS))
    total = labels.count()
    lines.append("total".ljust(width) + "".join(str(total[s]).rjust(8) for s in SPLITS))
    return "\n".join(lines)


# ---- the common list format (VE-8, YF-6: `Class/name label`, labels 1..K) -------------------------
def read_class_index(path: str | os.PathLike) -> list[str]:
    """`classInd.txt`: lines `k ClassName`, k = 1..K; returns the names in index order."""
    path = Path(path)
    found: dict[int, str] = {}
    for lineno, line in read_lines(path):
        parts = fields(line)
        if len(parts) != 2:
            raise TamError(f"{path}:{lineno}: expected `index ClassName`, got {line!r}")
        k = parse_int(parts[0], path, lineno, "class index")
        if k in found:
            raise TamError(f"{path}:{lineno}: class index {k} given twice")
        found[k] = parts[1]
    if sorted(found) != list(range(1, len(found) + 1)):
        raise TamError(f"{path}: class indices must be 1..{len(found)}, got {sorted(found)}")
    return [found[k] for k in range(1, len(found) + 1)]


def read_class_list(path: str | os.PathLike, classes: list[str], split: str) -> list[tuple[LabelRow, str]]:
    """A list of `Class/name [label]` lines (label = 1-based index into `classes`, optional).

    The class comes from the label when given, else from the folder; when both are given they must
    agree. The video id keeps the list's `Class/name` (extension removed): one name may sit in two
    class folders. Returns rows paired with `file:line`.
    """
    path = Path(path)
    by_lower = {c.lower(): c for c in classes}
    out = []
    for lineno, line in read_lines(path):
        parts = fields(line)
        if len(parts) not in (1, 2):
            raise TamError(f"{path}:{lineno}: expected `Class/name [label]`, got {line!r}")
        rel = parts[0].replace("\\", "/").strip("/")
        folder = rel.rsplit("/", 1)[0] if "/" in rel else None
        label = label_from_index(parts[1], classes, path, lineno) if len(parts) == 2 else None
        if folder is not None and folder.split("/")[-1].lower() in by_lower:
            from_folder = by_lower[folder.split("/")[-1].lower()]
            if label is not None and label != from_folder:
                raise TamError(f"{path}:{lineno}: label {parts[1]} ({label}) disagrees with the folder {folder!r}")
            label = from_folder
        if label is None:
            raise TamError(f"{path}:{lineno}: no label and the folder of {rel!r} is not a class ({classes})")
        vid = video_id(rel) if folder is not None else f"{label}/{strip_video_ext(rel)}"
        out.append((LabelRow(vid, label=label, split=split), f"{path}:{lineno}"))
    if not out:
        raise TamError(f"{path}: empty list")
    return out


def labels_from_class_lists(train: str | os.PathLike, test: str | os.PathLike, classes: list[str]) -> LabelSet:
    """Train and test lists in the common format -> one `LabelSet` (a video in both is an error)."""
    notes: list[str] = []
    pairs = read_class_list(train, classes, "train") + read_class_list(test, classes, "test")
    return LabelSet("classification", dedupe(pairs, notes), list(classes), notes)
