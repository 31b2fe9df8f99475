"""VE-8: folder scan, split lists (fixtures and the real split 01), the workbook of splits, seeded splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tam.datasets import ve8
from tam.datasets.common import read_labels_csv, strip_video_ext
from tam.errors import TamError

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REAL = SHARED / "realdata" / "labels" / "ve8_vaanet"


def make_root(tmp_path: Path, per_class: int = 6) -> Path:
    root = tmp_path / "VideoEmotion8"
    for c in ve8.CLASSES:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            (root / c / f"{c[:3].lower()}{i}.mp4").write_bytes(b"")
    (root / "Fear" / "shared_name.mp4").write_bytes(b"")  # one name in two class folders, as in VE-8
    (root / "Disgust" / "shared_name.MP4").write_bytes(b"")
    (root / "Joy" / "notes.txt").write_text("not a video")
    (root / "extras").mkdir()
    (root / "extras" / "x.mp4").write_bytes(b"")
    return root


def test_scan_keys_by_class_and_name(tmp_path):
    items = ve8.scan(make_root(tmp_path))
    assert len(items) == 8 * 6 + 2
    assert ("Fear/shared_name", "Fear") in items and ("Disgust/shared_name", "Disgust") in items
    assert not any(v.startswith("extras/") or v.endswith("notes") for v, _ in items)


def test_scan_errors(tmp_path):
    with pytest.raises(TamError, match="VE-8 root folder not found"):
        ve8.scan(tmp_path / "nope")
    with pytest.raises(TamError, match="no videos in class folders"):
        ve8.scan(tmp_path)


def test_make_splits_writes_shareable_files(tmp_path):
    root = make_root(tmp_path)
    out = tmp_path / "splits"
    csvs = ve8.make_splits(root, out, n_splits=3, seed=5)
    assert [p.name for p in csvs] == ["ve8_split01.csv", "ve8_split02.csv", "ve8_split03.csv"]
    meta = json.loads((out / "splits.json").read_text())
    assert meta["seed"] == 5 and meta["videos"] == 50 and meta["n_splits"] == 3
    first = read_labels_csv(csvs[0])
    n = Counter((r.label, r.split) for r in first.rows)
    assert n[("Anger", "train")] == 4 and n[("Anger", "test")] == 2
    assert n[("Fear", "train")] == 5 and n[("Fear", "test")] == 2  # 7 videos: round(7 * 2/3) = 5
    # the written lists are in the common format and read back to the same split
    again = ve8.from_lists(out / "trainlist01.txt", out / "testlist01.txt", out / "classInd.txt")
    assert sorted(again.rows, key=repr) == sorted(first.rows, key=repr)
    # re-running with the same seed leaves every file untouched
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    ve8.make_splits(root, out, n_splits=3, seed=5)
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_lists_fixture_with_cr_endings(tmp_path):
    (tmp_path / "train.txt").write_bytes(b"Fear/a 4\rDisgust/a 3\rJoy/b.mp4 5\r")
    (tmp_path / "test.txt").write_bytes(b"Trust/c\r")
    labels = ve8.from_lists(tmp_path / "train.txt", tmp_path / "test.txt")
    assert [(r.video, r.label, r.split) for r in labels.rows] == [
        ("Fear/a", "Fear", "train"), ("Disgust/a", "Disgust", "train"), ("Joy/b", "Joy", "train"),
        ("Trust/c", "Trust", "test")]


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata/labels not present")
def test_real_split01_lists():
    labels = ve8.from_lists(REAL / "trainlist01.txt", REAL / "testlist01.txt", REAL / "classInd.txt")
    assert labels.classes == ve8.CLASSES
    assert labels.count() == {"train": 732, "val": 0, "test": 367}
    assert len({r.video for r in labels.rows}) == 1099 and not labels.notes
    # the one name that sits in two class folders stays two videos
    dup = sorted(r.video for r in labels.rows if r.video.endswith("/3527012618_7ceb8fb27b_700"))
    assert dup == ["Disgust/3527012618_7ceb8fb27b_700", "Fear/3527012618_7ceb8fb27b_700"]
    # agrees with the same split in VAANet's JSON (which keys by bare name, so it holds one entry less)
    db = {strip_video_ext(k): v for k, v in json.loads((REAL / "ve8_01.json").read_text())["database"].items()}
    subset = {"training": "train", "validation": "test", "testing": "test"}
    agree = sum(1 for r in labels.rows if (db[r.video.split("/", 1)[1]]["annotations"]["label"], subset[
        db[r.video.split("/", 1)[1]]["subset"]]) == (r.label, r.split))
    assert len(db) == 1098 and agree == 1098


def _workbook(path: Path, sheets: list[tuple[list[str], list[str]]]) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for k, (train, test) in enumerate(sheets, 1):
        ws = wb.create_sheet(f"split{k}")
        ws["C1"], ws["D1"] = "VideoEmotion split", None
        ws["C2"], ws["D2"] = "train", "test"
        for i, name in enumerate(train, 3):
            ws.cell(row=i, column=3, value=name)
        for i, name in enumerate(test, 3):
            ws.cell(row=i, column=4, value=name)
    wb.save(path)


def test_workbook_with_class_paths(tmp_path):
    p = tmp_path / "splits.xlsx"
    _workbook(p, [(["Anger/a1.mp4", "Joy/j1"], ["Fear/f1"]), (["Fear/f1"], ["Anger/a1", "Joy/j1"])])
    s1, s2 = ve8.read_workbook(p)
    assert [(r.video, r.split) for r in s1.rows] == [("Anger/a1", "train"), ("Fear/f1", "test"), ("Joy/j1", "train")]
    assert s2.count() == {"train": 1, "val": 0, "test": 2}


def test_workbook_bare_names_resolved_under_root(tmp_path):
    root = make_root(tmp_path)
    p = tmp_path / "splits.xlsx"
    _workbook(p, [(["ang0", "shared_name", "joy1"], ["shared_name.mp4", "tru2"])])
    (s1,) = ve8.read_workbook(p, root)
    got = {(r.video, r.label, r.split) for r in s1.rows}
    # reading order is row by row, C before D: D3 is the first `shared_name`, so it takes Disgust
    assert got == {("Anger/ang0", "Anger", "train"), ("Disgust/shared_name", "Disgust", "test"),
                   ("Joy/joy1", "Joy", "train"), ("Fear/shared_name", "Fear", "train"), ("Trust/tru2", "Trust", "test")}


def test_workbook_errors_name_the_cell(tmp_path):
    root = make_root(tmp_path)
    p = tmp_path / "splits.xlsx"
    _workbook(p, [(["ang0", "ghost"], ["tru2"])])
    with pytest.raises(TamError, match=r"splits.xlsx\[split1\]!C4: video 'ghost' is in no class folder"):
        ve8.read_workbook(p, root)
    with pytest.raises(TamError, match=r"\[split1\]!C3: bare name 'ang0'; pass the VE-8 root"):
        ve8.read_workbook(p)
    _workbook(p, [(["shared_name"], ["tru2"])])
    with pytest.raises(TamError, match=r"is in 2 class folders .* occurs 1 time"):
        ve8.read_workbook(p, root)
    (tmp_path / "bad.xlsx").write_text("not a workbook")
    with pytest.raises(TamError, match="bad.xlsx: cannot read workbook"):
        ve8.read_workbook(tmp_path / "bad.xlsx")
