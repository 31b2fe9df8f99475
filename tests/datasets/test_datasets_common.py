"""Shared parsing pieces: line endings, BOM, errors with file and line, duplicates, the labels CSV round trip."""

from __future__ import annotations

import pytest

from tam.datasets.common import (
    LabelRow,
    LabelSet,
    dedupe,
    labels_from_class_lists,
    read_class_index,
    read_labels_csv,
    read_lines,
    strip_video_ext,
    summary_table,
    write_labels_csv,
)
from tam.datasets.labels import read_labels
from tam.errors import TamError


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_read_lines_any_line_ending(tmp_path, eol):
    p = tmp_path / "x.txt"
    p.write_bytes(b"\xef\xbb\xbfa 1" + eol + eol + b"  b 2  " + eol + b"c 3")
    assert read_lines(p) == [(1, "a 1"), (3, "b 2"), (4, "c 3")]


def test_read_lines_not_utf8_names_line(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"ok\rstill ok\r\xff bad\n")
    with pytest.raises(TamError, match=r"x.txt:3: not UTF-8"):
        read_lines(p)


def test_read_lines_missing_file(tmp_path):
    with pytest.raises(TamError, match="missing.txt: cannot read"):
        read_lines(tmp_path / "missing.txt")


def test_strip_video_ext():
    assert strip_video_ext("ACCEDE00001.mp4") == "ACCEDE00001"
    assert strip_video_ext("a.b.AVI") == "a.b"
    assert strip_video_ext("8931828341_360p") == "8931828341_360p"


def test_class_index_without_trailing_newline_and_bad_index(tmp_path):
    p = tmp_path / "classInd.txt"
    p.write_text("1 A\n2 B\n3 C")
    assert read_class_index(p) == ["A", "B", "C"]
    p.write_text("1 A\n3 C\n")
    with pytest.raises(TamError, match=r"indices must be 1..2"):
        read_class_index(p)
    p.write_text("1 A\nx C\n")
    with pytest.raises(TamError, match=r"classInd.txt:2: class index is not an integer"):
        read_class_index(p)


def test_class_lists_same_name_in_two_classes_and_unlabelled_test(tmp_path):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("A/x 1\nB/x 2\nB/y.mp4 2\n")
    test.write_text("A/z\r\nB/w\r\n")
    labels = labels_from_class_lists(train, test, ["A", "B"])
    assert [(r.video, r.label, r.split) for r in labels.rows] == [
        ("A/x", "A", "train"), ("B/x", "B", "train"), ("B/y", "B", "train"), ("A/z", "A", "test"), ("B/w", "B", "test")]


@pytest.mark.parametrize("line, message", [
    ("A/x 2", r"train.txt:2: label 2 \(B\) disagrees with the folder 'A'"),
    ("A/x 9", r"train.txt:2: label 9 is outside 1..2"),
    ("A/x 1 extra", r"train.txt:2: expected `Class/name \[label\]`"),
    ("Q/x", r"train.txt:2: no label and the folder"),
])
def test_class_list_errors_name_file_and_line(tmp_path, line, message):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text(f"A/ok 1\n{line}\n")
    test.write_text("B/t\n")
    with pytest.raises(TamError, match=message):
        labels_from_class_lists(train, test, ["A", "B"])


def test_duplicates_dropped_conflicts_refused(tmp_path):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("A/x 1\nA/x 1\n")
    test.write_text("B/t\n")
    labels = labels_from_class_lists(train, test, ["A", "B"])
    assert [r.video for r in labels.rows] == ["A/x", "B/t"]
    assert "1 duplicate line(s) dropped (first: " in labels.notes[0] and "train.txt:2" in labels.notes[0]
    test.write_text("A/x\n")  # in train and test: leakage
    with pytest.raises(TamError, match=r"test.txt:1: video 'A/x' already listed at .*train.txt:1 with another split"):
        labels_from_class_lists(train, test, ["A", "B"])


def test_dedupe_conflicting_label():
    rows = [(LabelRow("v", "A"), "f:1"), (LabelRow("v", "B"), "f:7")]
    with pytest.raises(TamError, match="f:7: video 'v' already listed at f:1 with another label"):
        dedupe(rows, [])


def test_labels_csv_round_trip_and_engine_reads_it(tmp_path):
    cls = LabelSet("classification", [LabelRow("A/x, quoted", "A", split="train"), LabelRow("B/y", "B", split="test")],
                 ["A", "B"])
    p = tmp_path / "c.csv"
    assert write_labels_csv(p, cls) is True
    assert write_labels_csv(p, cls) is False  # unchanged: not rewritten
    back = read_labels_csv(p)
    assert back.rows == cls.rows and back.task == "classification"
    engine = read_labels(p, "classification", ["A", "B"])
    assert engine.videos == ["A/x, quoted", "B/y"] and list(engine.targets) == [0, 1]
    assert engine.split == ["train", "test"]
    reg = LabelSet("regression", [LabelRow("c1", valence=0.1, arousal=-2.5e-3, split="val")])
    write_labels_csv(tmp_path / "r.csv", reg)
    assert read_labels_csv(tmp_path / "r.csv").rows == reg.rows
    targets = read_labels(tmp_path / "r.csv", "regression").targets.tolist()
    assert targets == [[pytest.approx(0.1), pytest.approx(-2.5e-3)]]


def test_refuses_empty_labels(tmp_path):
    with pytest.raises(TamError, match="empty labels"):
        write_labels_csv(tmp_path / "e.csv", LabelSet("classification", []))


def test_summary_table_counts():
    labels = LabelSet("classification", [LabelRow("a", "A"), LabelRow("b", "A", split="test"), LabelRow("c", "B")],
                    ["A", "B"])
    text = summary_table(labels).splitlines()
    assert text[1].split() == ["A", "1", "0", "1"] and text[-1].split() == ["total", "2", "0", "1"]
