"""YF-6: the public split lists (`anger/1000 1`, labels 1–6)."""

from __future__ import annotations

import pytest

from tam.datasets import yf6
from tam.errors import TamError


def test_public_lists(tmp_path):
    (tmp_path / "train.txt").write_text("anger/1000 1\ndisgust/2 2\njoy/7.mp4 4\n")
    (tmp_path / "test.txt").write_text("surprise/9 6\r\nsadness/3 5\r\nfear/1000 3\r\n")
    labels = yf6.from_lists(tmp_path / "train.txt", tmp_path / "test.txt")
    assert labels.classes == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert [(r.video, r.label, r.split) for r in labels.rows] == [
        ("anger/1000", "anger", "train"), ("disgust/2", "disgust", "train"), ("joy/7", "joy", "train"),
        ("surprise/9", "surprise", "test"), ("sadness/3", "sadness", "test"), ("fear/1000", "fear", "test")]
    assert labels.notes == ["3/3 train/test videos; the public split has 819/818"]


def test_full_size_split_has_no_note(tmp_path):
    (tmp_path / "train.txt").write_text("".join(f"{yf6.CLASSES[i % 6]}/{i} {i % 6 + 1}\n" for i in range(819)))
    (tmp_path / "test.txt").write_text("".join(f"{yf6.CLASSES[i % 6]}/t{i} {i % 6 + 1}\n" for i in range(818)))
    labels = yf6.from_lists(tmp_path / "train.txt", tmp_path / "test.txt")
    assert labels.count() == {"train": 819, "val": 0, "test": 818} and labels.notes == []


def test_label_folder_mismatch_names_line(tmp_path):
    (tmp_path / "train.txt").write_text("anger/1 1\nanger/2 2\n")
    (tmp_path / "test.txt").write_text("fear/3 3\n")
    with pytest.raises(TamError, match=r"train.txt:2: label 2 \(disgust\) disagrees with the folder 'anger'"):
        yf6.from_lists(tmp_path / "train.txt", tmp_path / "test.txt")
