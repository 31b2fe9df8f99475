"""`tam dataset ...` end to end on fixture files: the real command module, the files it writes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tam.commands import dataset
from tam.datasets.common import read_labels_csv
from tam.errors import TamError
from tam.features.store import Encoder, FeatureStore, Manifest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REAL = SHARED / "realdata" / "labels" / "ve8_vaanet"


def tam_dataset(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    dataset.add_arguments(parser)
    return dataset.run(parser.parse_args([str(a) for a in argv]))


def test_splits_ve8_from_folders(tmp_path, capsys):
    root = tmp_path / "ve8"
    for c in ("Anger", "Joy", "Trust"):
        (root / c).mkdir(parents=True)
        for i in range(9):
            (root / c / f"{c}{i}.mp4").write_bytes(b"")
    assert tam_dataset("splits", "ve8", "--root", root, "--out", tmp_path / "splits", "--n", "2", "--seed", "1") == 0
    assert "2 split(s)" in capsys.readouterr().out
    labels = read_labels_csv(tmp_path / "splits" / "ve8_split02.csv")
    assert labels.count() == {"train": 18, "val": 0, "test": 9}
    assert json.loads((tmp_path / "splits" / "splits.json").read_text())["seed"] == 1
    with pytest.raises(TamError, match="needs --root"):
        tam_dataset("splits", "ve8", "--out", tmp_path / "x")


def test_splits_custom_csv(tmp_path):
    (tmp_path / "mine.csv").write_text("video,label\n" + "".join(f"v{i},{'ab'[i % 2]}\n" for i in range(12)))
    tam_dataset("splits", "custom", "--csv", tmp_path / "mine.csv", "--out", tmp_path / "s", "--n", "3")
    assert read_labels_csv(tmp_path / "s" / "mine_split03.csv").count()["test"] == 4


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realdata/labels not present")
def test_ve8_real_lists_to_csv(tmp_path, capsys):
    tam_dataset("ve8", "--train", REAL / "trainlist01.txt", "--test", REAL / "testlist01.txt",
                "--class-index", REAL / "classInd.txt", "--out", tmp_path)
    out = capsys.readouterr().out
    assert "ve8_split01.csv: written (1099 videos, classification)" in out and "total" in out
    from tam.datasets.labels import read_labels

    engine = read_labels(tmp_path / "ve8_split01.csv", "classification",
                         ["Anger", "Anticipation", "Disgust", "Fear", "Joy", "Sadness", "Surprise", "Trust"])
    assert engine.split.count("train") == 732 and engine.split.count("test") == 367


def test_mediaeval_and_liris_commands(tmp_path):
    rank = tmp_path / "ACCEDEranking.txt"
    rank.write_text("".join(f"{i}\tACCEDE{i:05d}.mp4\t{i}\t{i}\t{i / 2}\t{i / 3}\t0\t0\n" for i in range(6)))
    sets = tmp_path / "ACCEDEsets.txt"
    sets.write_text("".join(f"{i}\tACCEDE{i:05d}.mp4\t{i % 3}\n" for i in range(6)))
    gt = tmp_path / "MEDIAEVAL16-Global_prediction.txt"
    gt.write_bytes(b"MEDIAEVAL16_00000.mp4 1 2\rMEDIAEVAL16_00001.mp4 3 4\r")
    tam_dataset("mediaeval2016", "--ranking", rank, "--test-truth", gt, "--out", tmp_path / "me16")
    assert read_labels_csv(tmp_path / "me16" / "mediaeval2016.csv").count() == {"train": 6, "val": 0, "test": 2}
    tam_dataset("liris", "--ranking", rank, "--sets", sets, "--out", tmp_path / "liris")
    assert read_labels_csv(tmp_path / "liris" / "liris_accede.csv").count() == {"train": 2, "val": 2, "test": 2}
    lab = tmp_path / "labels.txt"
    lab.write_text("".join(f"{i}\tACCEDE{i:05d}.mp4\t{i % 3 - 1}\t{1 - i % 3}\n" for i in range(6)))
    (tmp_path / "dev.txt").write_text("ACCEDE00000.mp4\nACCEDE00001.mp4\nACCEDE00002.mp4\n")
    (tmp_path / "test.txt").write_text("ACCEDE00003.mp4\n")
    tam_dataset("mediaeval2015", "--labels", lab, "--dev", tmp_path / "dev.txt", "--test", tmp_path / "test.txt",
                "--out", tmp_path / "me15")
    arousal = read_labels_csv(tmp_path / "me15" / "mediaeval2015_arousal.csv")
    assert [r.label for r in arousal.rows] == ["active", "neutral", "calm", "active"]


def test_import_features_then_check(tmp_path, capsys):
    (tmp_path / "t.tsv").write_text("0\tA.mp4\t1\t2\n1\tB.mp4\t3\t4\n2\tC.mp4\tinf\t4\n")
    (tmp_path / "g.yaml").write_text("modalities:\n  audio: [f1]\n  image: [f2]\n")
    tam_dataset("import-features", tmp_path / "t.tsv", "--groups", tmp_path / "g.yaml", "--store", tmp_path / "s")
    out = capsys.readouterr().out
    assert "2 clip(s) written, 0 already present, 1 skipped" in out and "skipped C: line 3" in out
    (tmp_path / "l.csv").write_text("video,label,split\nA,x,train\nB,y,test\nC,y,test\n")
    assert tam_dataset("check", tmp_path / "l.csv", "--store", tmp_path / "s") == 1
    out = capsys.readouterr().out
    assert "train: 1 of 1 videos in the store" in out and " test: 1 of 2" in out and "missing: C (test)" in out


def test_check_all_present(tmp_path):
    store = FeatureStore.create(tmp_path / "s", Manifest({"audio": Encoder("x", 2)}))
    store.write("A", {"audio": [[1.0, 2.0]]}, [[0.0, 1.0]])
    (tmp_path / "l.csv").write_text("video,label\nA,x\n")
    assert tam_dataset("check", tmp_path / "l.csv", "--store", tmp_path / "s") == 0
