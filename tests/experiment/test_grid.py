"""Grid expansion, the labels subsample, refusals before anything runs, and the listed commands."""

import csv
import io
import shlex

import pytest

from tam.cli import main
from tam.datasets.labels import read_labels
from tam.errors import TamError
from tam.experiment.grid import load_grid, subsample_labels

from .conftest import write_grid

AXES = {"fusion": ["ctm", "concat"], "labelled": [20, 40], "seed": [0, 1]}


def test_expansion_names_overrides_and_claims(tmp_path, tiny_world):
    g = load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", AXES, [["ctm", ">", "concat"]]))
    assert len(g.runs) == 8 and len({r.run_dir for r in g.runs}) == 8
    r = g.runs[0]
    assert r.name == "fusion-ctm__labelled-20__seed-0" and r.labelled == 20 and r.seed == 0
    assert 'model.fusion="ctm"' in r.overrides and "train.seed=0" in r.overrides
    assert [o for o in r.overrides if o.startswith("data.labels=")] == [f'data.labels="{r.run_dir / "labels.csv"}"']
    assert g.claims == [["ctm", ">", "concat"]]


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_subsample_is_stratified_deterministic_nested_and_keeps_test_rows(tiny_world):
    _, labels = tiny_world
    full = read_labels(labels, "classification")
    a = _rows(subsample_labels(labels, 20, seed=0, task="classification", classes=[]))
    assert a == _rows(subsample_labels(labels, 20, seed=0, task="classification", classes=[]))
    train = [r for r in a if r["split"] == "train"]
    assert len(train) == 20
    test = [r["video"] for r in a if r["split"] == "test"]
    assert test == [v for v, s in zip(full.videos, full.split) if s == "test"]  # every test row, untouched
    pool = [c for c, s in zip(full.targets, full.split) if s == "train"]
    share = sum(pool) / len(pool)
    assert abs(sum(r["label"] == full.classes[1] for r in train) / 20 - share) <= 0.05 + 1 / 20  # stratified
    b = {r["video"] for r in _rows(subsample_labels(labels, 40, seed=0, task="classification", classes=[]))
         if r["split"] == "train"}
    assert {r["video"] for r in train} <= b  # nested in n for one seed
    other = {r["video"] for r in _rows(subsample_labels(labels, 20, seed=1, task="classification", classes=[]))
             if r["split"] == "train"}
    assert other != {r["video"] for r in train}
    with pytest.raises(TamError, match="61 labelled videos asked for, the file has 60 training rows"):
        subsample_labels(labels, 61, seed=0, task="classification", classes=[])


def test_mixed_grid_is_refused_before_anything_runs(tmp_path, tiny_world, capsys):
    store, _ = tiny_world
    path = write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out",
                      {"fusion": ["ctm"], "data.store": [str(store), str(tmp_path / "other")], "seed": [0]})
    assert main(["experiment", "run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "disagree on the feature store" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("claim, msg", [(["ctm", ">=", "concat"], "a claim is"),
                                        (["ctm", ">", "joint"], "not a value")])
def test_bad_claims_are_refused(tmp_path, tiny_world, claim, msg):
    with pytest.raises(TamError, match=msg):
        load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", AXES, [claim]))


def test_pretrained_arm_needs_a_checkpoint_and_points_at_it(tmp_path, tiny_world):
    axes = {"fusion": ["ctm"], "pretrained": [False, True], "seed": [0, 1]}
    with pytest.raises(TamError, match="no `pretrain:` section"):
        load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", axes))
    g = load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", axes, extra={
        "pretrain": {"store": "u/store", "corpus": "u/corpus", "set": {"optim.epochs": 1},
                     "finetune": {"optim.fusion_lr": 1e-5}}}))
    pre = [r for r in g.runs if r.values["pretrained"]]
    assert len(g.pretrain_steps) == 2 and {r.pretrain.run_dir for r in pre} == {s.run_dir for s in g.pretrain_steps}
    assert all(f'train.init_from="{r.pretrain.checkpoint}"' in r.overrides and "optim.fusion_lr=1e-05" in r.overrides
               for r in pre)
    step = g.pretrain_steps[0].argv()
    assert step[:2] == ["pretrain", "run"] and 'model.fusion="ctm"' in step and "optim.epochs=1" in step
    scratch = [r for r in g.runs if not r.values["pretrained"]]
    assert not any(o.startswith("train.init_from") for r in scratch for o in r.overrides)


def test_list_prints_one_self_contained_command_per_run(tmp_path, tiny_world, capsys):
    path = write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", AXES)
    assert main(["experiment", "list", str(path)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 8
    for line in lines:
        argv = shlex.split(line)
        assert argv[:2] == ["tam", "train"]
        run_dir = argv[argv.index("--run-dir") + 1]
        labels = next(a.split("=", 1)[1] for a in argv if a.startswith("data.labels="))
        assert labels.strip('"') == f"{run_dir}/labels.csv"
        assert len(_rows(open(labels.strip('"')).read())) in (20 + 40, 40 + 40)  # written by `list`
