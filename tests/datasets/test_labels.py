"""The labels table: classes come from the training rows; a class seen only in test rows is refused (file and
line) unless the user lists the classes."""

import subprocess
import sys

import numpy as np
import pytest

from tam.datasets.labels import read_labels
from tam.errors import TamError

CSV = "video,label,split\na,calm,train\nb,tense,train\nc,calm,val\nd,tense,test\ne,furious,test\nf,calm,test\n"


def test_a_test_only_class_is_refused_with_file_and_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(CSV)
    with pytest.raises(TamError) as e:
        read_labels(path, "classification")
    msg = str(e.value)
    assert msg.startswith(f"{path}:6: class 'furious' of video 'e' appears only in test rows") and "\n" not in msg
    assert "data.classes" in msg


def test_listed_classes_keep_a_test_only_class(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(CSV)
    labels = read_labels(path, "classification", ["calm", "furious", "tense"])
    assert labels.classes == ["calm", "furious", "tense"]
    assert labels.targets.tolist() == [0, 2, 0, 2, 1, 0]


def test_classes_come_from_train_and_val_rows(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(CSV.replace("e,furious,test", "e,tense,test") + "g,sleepy,val\n")
    labels = read_labels(path, "classification")
    assert labels.classes == ["calm", "sleepy", "tense"]
    assert np.bincount(labels.targets).tolist() == [3, 1, 3]


def test_a_label_outside_the_listed_classes_names_the_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(CSV)
    with pytest.raises(TamError, match=r"labels.csv:6: label 'furious' of video 'e' is not one of the classes"):
        read_labels(path, "classification", ["calm", "tense"])


def test_train_cli_refuses_a_test_only_class(tiny_world, tmp_path):
    store, labels = tiny_world
    rows = labels.read_text().splitlines()
    i = next(k for k, r in enumerate(rows) if r.endswith(",test"))
    video = rows[i].split(",")[0]
    rows[i] = f"{video},scene9_sideways,test"
    bad = tmp_path / "labels.csv"
    bad.write_text("\n".join(rows) + "\n")
    p = subprocess.run([sys.executable, "-m", "tam", "train", "--store", str(store), "--labels", str(bad),
                        "--run-dir", str(tmp_path / "run"), "--set", "model.d=16", "--set", "model.layers=1",
                        "--set", "model.heads=2", "--set", "train.num_workers=0"], capture_output=True, text=True)
    err = p.stderr.strip()
    assert p.returncode == 2 and err.count("\n") == 0, err
    assert f"{bad}:{i + 1}: class 'scene9_sideways' of video '{video}' appears only in test rows" in err
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize("data, message", [(b"\xff\xfe\x00\x81garbage", "not UTF-8"),
                                           (b"video,label\n" + b"a" * 200000 + b",x\n", "not a CSV table")])
def test_unreadable_labels_are_one_line(tmp_path, data, message):
    path = tmp_path / "labels.csv"
    path.write_bytes(data)
    with pytest.raises(TamError, match=message) as e:
        read_labels(path, "classification")
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
