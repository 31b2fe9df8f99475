"""Custom datasets: a CSV or TSV of video id or path, label or valence/arousal, optional split."""

from __future__ import annotations

import pytest

from tam.datasets.custom import read_custom
from tam.errors import TamError


def test_header_with_paths_relative_to_root(tmp_path):
    root = tmp_path / "videos"
    p = tmp_path / "mine.csv"
    p.write_text(f"path,label,split\nhappy/a.mp4,happy,\n{root}/sad/b.avi,sad,test\nsad/c.mkv,sad,val\n")
    labels = read_custom(p, root)
    assert [(r.video, r.label, r.split) for r in labels.rows] == [
        ("happy/a", "happy", "train"), ("sad/b", "sad", "test"), ("sad/c", "sad", "val")]
    assert labels.classes == ["happy", "sad"]
    p.write_text("path,label\n/elsewhere/a.mp4,happy\n")
    with pytest.raises(TamError, match="not under the dataset root"):
        read_custom(p, root)


@pytest.mark.parametrize("text, task, first", [
    ("v1,happy\nv2,sad\n", "classification", ("v1", "happy", None, "train")),
    ("v1,happy,test\nv2,sad,\n", "classification", ("v1", "happy", None, "test")),
    ("v1,0.5,-1E+00\nv2,1,2\n", "regression", ("v1", None, (0.5, -1.0), "train")),
    ("v1\t0.5\t2\tval\nv2\t1\t2\ttrain\n", "regression", ("v1", None, (0.5, 2.0), "val")),
])
def test_header_less_files(tmp_path, text, task, first):
    p = tmp_path / "x.csv"
    p.write_bytes(text.replace("\n", "\r").encode())
    labels = read_custom(p)
    r = labels.rows[0]
    values = None if r.valence is None else (r.valence, r.arousal)
    assert labels.task == task and (r.video, r.label, values, r.split) == first and len(labels.rows) == 2


def test_header_regression_with_id_column(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("id,valence,arousal,split\nc1,0.1,0.2,train\nc2,0.3,0.4,test\n")
    labels = read_custom(p)
    assert labels.task == "regression" and labels.count() == {"train": 1, "val": 0, "test": 1}


@pytest.mark.parametrize("text, message", [
    ("video,label\nv1,a\nv2\n", r"x.csv:3: expected at least 2 fields"),
    ("video,label,split\nv1,a,dev\n", r"x.csv:2: split must be one of"),
    ("video,valence,arousal\nv1,0.1,high\n", r"x.csv:2: arousal is not a number: 'high'"),
    ("video,score\nv1,1\n", r"x.csv:1: header needs `label` or `valence` and `arousal`"),
    ("v1,a,b,c,d\n", r"x.csv:1: cannot tell the columns"),
    ("video,label\nv1,a\nv1,b\n", r"x.csv:3: video 'v1' already listed at .*x.csv:2 with another label"),
])
def test_errors_name_file_and_line(tmp_path, text, message):
    p = tmp_path / "x.csv"
    p.write_text(text)
    with pytest.raises(TamError, match=message):
        read_custom(p)
