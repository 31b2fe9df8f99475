"""LIRIS-ACCEDE, MediaEval 2015 (classification) and MediaEval 2016 (regression) on fixture files."""

from __future__ import annotations

import pytest

from tam.datasets import liris
from tam.datasets.common import read_labels_csv, write_labels_csv
from tam.datasets.labels import read_labels
from tam.errors import TamError

RANK_HEADER = "id\tname\tvalenceRank\tarousalRank\tvalenceValue\tarousalValue\tvalenceVariance\tarousalVariance\n"


def ranking(tmp_path, header=True, n=4, eol="\n"):
    rows = [f"{i}\tACCEDE{i:05d}.mp4\t{100 + i}\t{200 - i}\t{1.5 + i / 10}\t{3.0 - i / 10}\t0.1\t0.2" for i in range(n)]
    p = tmp_path / "ACCEDEranking.txt"
    p.write_text((RANK_HEADER if header else "") + eol.join(rows) + eol, newline="")
    return p


def test_liris_own_sets(tmp_path):
    sets = tmp_path / "ACCEDEsets.txt"
    sets.write_text("id\tname\tset\n0\tACCEDE00000.mp4\t1\n1\tACCEDE00001.mp4\t2\n2\tACCEDE00002.mp4\t0\n"
                    "3\tACCEDE00003.mp4\t1\n4\tACCEDE00004.mp4\t0\n")
    labels = liris.liris_accede(ranking(tmp_path), sets)
    assert labels.task == "regression"
    assert [(r.video, r.split) for r in labels.rows] == [
        ("ACCEDE00000", "train"), ("ACCEDE00001", "val"), ("ACCEDE00002", "test"), ("ACCEDE00003", "train")]
    assert labels.rows[1].valence == pytest.approx(1.6) and labels.rows[1].arousal == pytest.approx(2.9)
    assert "1 clip(s)" in labels.notes[0] and "ACCEDE00004" in labels.notes[0]


def test_ranking_header_less_with_cr_endings(tmp_path):
    rows = liris.read_ranking(ranking(tmp_path, header=False, eol="\r"))
    assert [r.video for r, _ in rows] == ["ACCEDE00000", "ACCEDE00001", "ACCEDE00002", "ACCEDE00003"]


def test_ranking_errors_name_file_and_line(tmp_path):
    p = ranking(tmp_path)
    p.write_text(p.read_text().replace("\t1.7\t", "\tabc\t"))
    with pytest.raises(TamError, match=r"ACCEDEranking.txt:4: valenceValue is not a number: 'abc'"):
        liris.read_ranking(p)
    p.write_text(RANK_HEADER + "0\tACCEDE0.mp4\t1\t2\t3\n")
    with pytest.raises(TamError, match=r"ACCEDEranking.txt:2: expected 8 columns"):
        liris.read_ranking(p)


def test_sets_errors(tmp_path):
    p = tmp_path / "ACCEDEsets.txt"
    p.write_text("0\tA.mp4\t7\n")
    with pytest.raises(TamError, match=r"ACCEDEsets.txt:1: set must be 0 \(test\)"):
        liris.read_sets(p)
    p.write_text("0\tA.mp4\t1\n1\tA.mp4\t0\n")
    with pytest.raises(TamError, match=r"ACCEDEsets.txt:2: 'A' already in set train"):
        liris.read_sets(p)


def me15_files(tmp_path):
    lab = tmp_path / "ACCEDEaffect.txt"
    lab.write_text("id\tname\tvalenceClass\tarousalClass\n0\tACCEDE00000.mp4\t-1\t1\n1\tACCEDE00001.mp4\t0\t-1\n"
                   "2\tACCEDE00002.mp4\t1\t0\n3\tMEDIAEVAL15_00003.mp4\t1\t1\n")
    dev, test = tmp_path / "shots-devset-nl.txt", tmp_path / "shots-testset-nl.txt"
    dev.write_bytes(b"ACCEDE00000.mp4\r\nACCEDE00001.mp4\r\nACCEDE00001.mp4\r\n")
    test.write_text("ACCEDE00002.mp4\nMEDIAEVAL15_00003.mp4\n")
    return lab, dev, test


def test_mediaeval2015_two_tasks(tmp_path):
    out = liris.mediaeval2015(*me15_files(tmp_path))
    v, a = out["valence"], out["arousal"]
    assert v.classes == ["negative", "neutral", "positive"] and a.classes == ["calm", "neutral", "active"]
    assert [(r.video, r.label, r.split) for r in v.rows] == [
        ("ACCEDE00000", "negative", "train"), ("ACCEDE00001", "neutral", "train"),
        ("ACCEDE00002", "positive", "test"), ("MEDIAEVAL15_00003", "positive", "test")]
    assert [r.label for r in a.rows] == ["active", "calm", "neutral", "active"]
    assert any("duplicate" in n for n in v.notes) and any("6144/4756" in n for n in v.notes)
    write_labels_csv(tmp_path / "v.csv", v)
    assert read_labels(tmp_path / "v.csv", "classification", v.classes).targets.tolist() == [0, 1, 2, 2]


def test_mediaeval2015_errors(tmp_path):
    lab, dev, test = me15_files(tmp_path)
    test.write_text("ACCEDE00002.mp4\nACCEDE09999.mp4\n")
    with pytest.raises(TamError, match=r"shots-testset-nl.txt:2: no labels for 'ACCEDE09999'"):
        liris.mediaeval2015(lab, dev, test)
    test.write_text("ACCEDE00000.mp4\n")
    with pytest.raises(TamError, match=r"shots-testset-nl.txt:1: video 'ACCEDE00000' already listed .* another split"):
        liris.mediaeval2015(lab, dev, test)
    lab.write_text("0\tACCEDE00000.mp4\t2\t1\n")
    with pytest.raises(TamError, match=r"ACCEDEaffect.txt:1: valenceClass must be -1, 0 or 1, got 2"):
        liris.mediaeval2015(lab, dev, test)


def test_mediaeval2016_cr_header_less_truth(tmp_path):
    gt = tmp_path / "MEDIAEVAL16-Global_prediction.txt"
    gt.write_bytes(b"MEDIAEVAL16_00000.mp4\t2.5\t3.25\rMEDIAEVAL16_00001.mp4\t-0.5\t4.0E+00\r")
    labels = liris.mediaeval2016(ranking(tmp_path), gt)
    assert labels.task == "regression" and labels.count() == {"train": 4, "val": 0, "test": 2}
    test = [r for r in labels.rows if r.split == "test"]
    assert [(r.video, r.valence, r.arousal) for r in test] == [("MEDIAEVAL16_00000", 2.5, 3.25),
                                                                ("MEDIAEVAL16_00001", -0.5, 4.0)]
    write_labels_csv(tmp_path / "me16.csv", labels)
    assert read_labels_csv(tmp_path / "me16.csv").rows == labels.rows
    assert read_labels(tmp_path / "me16.csv", "regression").split.count("test") == 2


def test_mediaeval2016_errors(tmp_path):
    gt = tmp_path / "MEDIAEVAL16-Global_prediction.txt"
    gt.write_text("MEDIAEVAL16_00000.mp4 2.5\n")
    with pytest.raises(TamError, match=r"Global_prediction.txt:1: expected `name valence arousal`"):
        liris.mediaeval2016(ranking(tmp_path), gt)
    gt.write_text("ACCEDE00001.mp4 2.5 1\n")  # a training clip in the test truth
    with pytest.raises(TamError, match=r"Global_prediction.txt:1: video 'ACCEDE00001' already listed"):
        liris.mediaeval2016(ranking(tmp_path), gt)
    gt.write_text("X 2.5 nan\n")
    with pytest.raises(TamError, match=r"Global_prediction.txt:1: arousal is not finite"):
        liris.mediaeval2016(ranking(tmp_path), gt)
