"""The real `tam` command line, run as a user runs it, in a temporary folder."""

import json
import os
import subprocess
import sys

import pytest

from tam.cli import COMMANDS

TAM = [sys.executable, "-m", "tam"]


def tam(*args, cwd=None, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*TAM, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def test_help_lists_every_command():
    p = tam("--help")
    assert p.returncode == 0
    for name in COMMANDS:
        assert name in p.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_examples(name):
    p = tam(name, "--help")
    assert p.returncode == 0, p.stderr
    assert "examples:" in p.stdout and "tam " in p.stdout.split("examples:")[1]


def test_bad_input_is_one_line_error(tmp_path):
    p = tam("store", str(tmp_path))
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "not a feature store" in p.stderr


@pytest.mark.slow
def test_synth_train_evaluate(tmp_path):
    assert tam("synth", "--out", str(tmp_path / "w"), "--videos", "60").returncode == 0
    p = tam("train", "--store", str(tmp_path / "w" / "store"), "--labels", str(tmp_path / "w" / "labels.csv"),
            "--run-dir", str(tmp_path / "run"), "--set", "model.d=16", "--set", "model.layers=1",
            "--set", "model.heads=2", "--set", "model.T=8", "--set", "optim.epochs=2", "--set", "train.num_workers=1")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "majority class (test)" in p.stdout
    p = tam("evaluate", "--run-dir", str(tmp_path / "run"), "--store", str(tmp_path / "w" / "store"),
            "--labels", str(tmp_path / "w" / "labels.csv"), "--split", "test", "--out", str(tmp_path / "e.json"))
    assert p.returncode == 0, p.stderr[-2000:]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())["test"]
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["accuracy"] == pytest.approx(saved["accuracy"])
    p = tam("store", str(tmp_path / "w" / "store"))
    assert p.returncode == 0 and "videos: 60" in p.stdout


@pytest.mark.slow
def test_demo_quick(quick_demo):
    out, _ = quick_demo  # the one `tam demo --quick` run of the session (tests/conftest.py), exit status checked there
    report = (out / "report.md").read_text()
    assert "Cross-temp multimodal (CTM)" in report and "majority class (trivial baseline)" in report
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["rows"]) == {"concat", "ctm"}
    assert all(0 <= r["accuracy_mean"] <= 1 for r in summary["rows"].values())
