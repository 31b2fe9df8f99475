"""`tam tune` as a user runs it: a bad search space is one line; a one-trial study with --final scores test once."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from tam.config import dump_config, load_config


def tam(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "tam", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.mark.slow
def test_tune_bad_space_then_one_trial_with_final(tiny_config, tmp_path):
    (tmp_path / "base.yaml").write_text(dump_config(tiny_config))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"optim.learning_rate": {"type": "float", "low": 0, "high": 1}}))
    p = tam("tune", "--config", "base.yaml", "--space", "bad.yaml", "--study-dir", "s", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "not a config field" in p.stderr
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"model.dropout": {"type": "float", "low": 0, "high": 0.2}}))
    p = tam("tune", "--config", "base.yaml", "--space", "space.yaml", "--study-dir", "s", "--trials", "1",
            "--set", "optim.epochs=1", "--final", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "1 trials: 1 complete" in p.stdout and "model (test)" in p.stdout  # the final run's results table
    trial = json.loads((tmp_path / "s" / "trials" / "0000" / "results.json").read_text())
    final = json.loads((tmp_path / "s" / "final" / "results.json").read_text())
    assert trial["test"] == {} and final["test"] and final["val"] == trial["val"]  # same config, same seed
    best = load_config(tmp_path / "s" / "best.yaml")
    assert best.optim.epochs == 1 and 0 <= best.model.dropout <= 0.2
    assert best.train.progress == tiny_config.train.progress  # trial-only settings do not leak into best.yaml
