"""`tam tune`: the search space, the study's fingerprint, NaN trials, and a study killed mid-trial that resumes."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tam.config import dump_config, load_config
from tam.errors import TamError
from tam.train.tune import TuneOptions, apply_params, check_fingerprint, fingerprint, load_space, load_study, tune

SPACE = {"optim.lr": {"type": "float", "low": "1e-4", "high": 3e-3, "log": True},
         "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
         "model.layers": {"type": "int", "low": 1, "high": 2},
         "optim.batch_size": {"type": "categorical", "choices": [4, 8]}}


def _write(path: Path, obj) -> Path:
    path.write_text(yaml.safe_dump(obj), encoding="utf-8")
    return path


def test_space_names_config_fields_by_dotted_path(tiny_config, tmp_path):
    space = load_space(_write(tmp_path / "s.yaml", SPACE), tiny_config)
    assert space["optim.lr"].low == pytest.approx(1e-4) and space["optim.lr"].log  # "1e-4" (YAML 1.1 string) -> float
    assert space["model.layers"].type == "int" and space["optim.batch_size"].choices == [4, 8]
    cfg = apply_params(tiny_config, {"optim.lr": 2e-3, "model.dropout": 0.25, "model.layers": 2})
    assert (cfg.optim.lr, cfg.model.dropout, cfg.model.layers) == (2e-3, 0.25, 2)
    assert tiny_config.model.layers == 1  # the base is not modified


@pytest.mark.parametrize("spec, message", [
    ({"optim.nope": {"type": "float", "low": 0, "high": 1}}, "not a config field"),
    ({"lr": {"type": "float", "low": 0, "high": 1}}, "not a config field"),
    ({"data.labels": {"type": "categorical", "choices": ["a.csv"]}}, "fixed during a search"),
    ({"model.layers": {"type": "float", "low": 1, "high": 2}}, "float range for a int field"),
    ({"optim.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "low <= high"),
    ({"optim.lr": {"type": "float", "low": 0, "high": 0.01, "log": True}}, "low > 0 with log"),
    ({"optim.lr": {"type": "uniform", "low": 0, "high": 1}}, "type one of"),
    ({"optim.lr": {"type": "float", "low": 0, "high": 1, "choices": [1]}}, "unknown keys ['choices']"),
    ({"model.fusion": {"type": "categorical", "choices": ["ctm", "nope"]}}, "model.fusion must be one of"),
    ({"model.d": {"type": "categorical", "choices": [16, "wide"]}}, "expected int"),
    ([1, 2], "non-empty mapping"),
])
def test_bad_search_space_is_one_line_error_naming_the_file(tiny_config, tmp_path, spec, message):
    path = _write(tmp_path / "space.yaml", spec)
    with pytest.raises(TamError) as e:
        load_space(path, tiny_config)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_study_made_with_another_space_or_dataset_is_refused(tiny_config, tmp_path):
    space = load_space(_write(tmp_path / "s.yaml", SPACE), tiny_config)
    opts = TuneOptions(study_dir=str(tmp_path / "study"))
    (tmp_path / "study").mkdir()
    study = load_study(opts, create=True)
    fp = fingerprint(tiny_config, space, seed=0)
    check_fingerprint(study, fp, opts)
    check_fingerprint(load_study(opts), fp, opts)  # the same study again: accepted
    other_space = load_space(_write(tmp_path / "s2.yaml", {"optim.lr": SPACE["optim.lr"]}), tiny_config)
    labels = tmp_path / "labels.csv"
    labels.write_text(Path(tiny_config.data.labels).read_text() + "\n")  # same rows, other bytes
    other_labels = apply_params(tiny_config, {})
    other_labels.data.labels = str(labels)
    for part, other in (("search space", fingerprint(tiny_config, other_space, 0)),
                        ("labels", fingerprint(other_labels, space, 0)),
                        ("base config", fingerprint(apply_params(tiny_config, {"optim.epochs": 5}), space, 0)),
                        ("seed", fingerprint(tiny_config, space, 1))):
        with pytest.raises(TamError, match=f"made with another {part}") as e:
            check_fingerprint(load_study(opts), other, opts)
        assert "\n" not in str(e.value)
    # what does not change a trial's value is not part of it
    assert fingerprint(apply_params(tiny_config, {"train.progress": True, "train.num_workers": 3}), space, 0) == fp


def test_a_second_tune_on_the_same_study_folder_and_a_bad_storage_url_are_refused(tiny_config, tmp_path):
    import fcntl

    space = load_space(_write(tmp_path / "s.yaml", SPACE), tiny_config)
    study = tmp_path / "study"
    study.mkdir()
    fd = os.open(study / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what a running tam tune's worker holds
    try:
        with pytest.raises(TamError, match="another tam tune is running on this study folder"):
            tune(tiny_config, space, TuneOptions(study_dir=str(study), trials=1), log=lambda s: None)
    finally:
        os.close(fd)
    with pytest.raises(TamError, match="cannot open the study storage") as e:
        tune(tiny_config, space, TuneOptions(study_dir=str(study), trials=1, storage="nosuchdb://x/y"),
             log=lambda s: None)
    assert "\n" not in str(e.value)


def test_nan_loss_trial_is_pruned_with_its_reason_and_test_is_never_scored(tiny_config, tmp_path):
    base = apply_params(tiny_config, {"optim.epochs": 1})
    space = load_space(_write(tmp_path / "s.yaml", {"optim.lr": {"type": "categorical", "choices": [1e30, 1e-3]},
                                                    "optim.grad_clip": {"type": "categorical", "choices": [0.0]}}),
                       base)
    shared = tmp_path / "shared.db"  # an RDB URL (here SQLite; PostgreSQL/MySQL alike) instead of study.db
    summary = tune(base, space, TuneOptions(study_dir=str(tmp_path / "study"), trials=3, startup=10,
                                            storage=f"sqlite:///{shared}"), log=lambda s: None)
    assert shared.is_file() and not (tmp_path / "study" / "study.db").exists()
    rows = list(csv.DictReader((tmp_path / "study" / "trials.csv").open()))
    nan_rows = [r for r in rows if float(r["params.optim.lr"]) == 1e30]
    ok_rows = [r for r in rows if float(r["params.optim.lr"]) == 1e-3]
    assert nan_rows and ok_rows, rows  # 3 random draws of 2 choices with seed 0 cover both
    for r in nan_rows:
        assert r["state"] == "pruned" and "training loss is nan at epoch 1" in r["reason"], r
    assert all(r["state"] == "complete" and float(r["value"]) >= 0 for r in ok_rows)
    assert summary["best"]["params"]["optim.lr"] == 1e-3
    for r in ok_rows:  # trials select on validation and never score the test split
        results = json.loads((tmp_path / "study" / r["run_dir"] / "results.json").read_text())
        assert results["test"] == {} and results["baseline"] == {} and results["val"]
        assert results["n"]["test"] > 0
    best = load_config(tmp_path / "study" / "best.yaml")
    assert best.optim.lr == 1e-3 and best.optim.grad_clip == 0.0 and best.optim.epochs == 1
    assert (tmp_path / "study" / "history.png").stat().st_size > 1000
    assert summary["states"]["pruned"] == len(nan_rows) and summary["states"]["complete"] == len(ok_rows)
    assert f"{len(ok_rows)} complete, {len(nan_rows)} pruned" in (tmp_path / "study" / "summary.md").read_text()


def _tune_cmd(config: Path, space: Path, study: Path) -> list[str]:
    return [sys.executable, "-m", "tam", "tune", "--config", str(config), "--space", str(space), "--study-dir",
            str(study), "--trials", "3", "--startup-trials", "1", "--seed", "3"]


def _best(study: Path) -> tuple[dict, float]:
    s = json.loads((study / "summary.json").read_text())
    return s["best"]["params"], s["best"]["value"]


@pytest.mark.slow
def test_study_killed_mid_trial_resumes_to_the_same_best_trial(tiny_config, tmp_path):
    """kill -9 while trial 1 trains (sampled by TPE, prunable); the resumed study re-queues it, repeats no
    finished trial, and ends with the best params and value of an uninterrupted study with the same seed."""
    base = apply_params(tiny_config, {"optim.epochs": 2})
    config = tmp_path / "base.yaml"
    config.write_text(dump_config(base))
    space = _write(tmp_path / "space.yaml", {k: SPACE[k] for k in ("optim.lr", "model.dropout")})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    full = subprocess.run(_tune_cmd(config, space, tmp_path / "full"), env=env, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_tune_cmd(config, space, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "trials" / "0001").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    from optuna.trial import TrialState

    opts = TuneOptions(study_dir=str(killed))
    states = [t.state for t in load_study(opts).get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.RUNNING]  # killed mid-trial

    again = subprocess.run(_tune_cmd(config, space, killed), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "re-queued 1 trial(s)" in again.stdout
    trials = load_study(opts).get_trials()
    assert [t.state for t in trials].count(TrialState.FAIL) == 1  # the killed one, kept as a record
    finished = [t for t in trials if t.state != TrialState.FAIL]
    assert len(finished) == 3
    full_trials = [t for t in load_study(TuneOptions(study_dir=str(tmp_path / "full"))).get_trials()]
    assert [t.params for t in finished] == [t.params for t in full_trials]  # no finished trial was repeated
    assert [t.state for t in finished] == [t.state for t in full_trials]
    assert [t.value for t in finished] == [t.value for t in full_trials]
    assert _best(killed) == _best(tmp_path / "full")
    assert load_config(killed / "best.yaml") == load_config(tmp_path / "full" / "best.yaml")
