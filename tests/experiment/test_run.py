"""The runner's smoke test through the real CLI (`python -m tam experiment run/list/collect` in subprocesses): a tiny
grid (2 fusions x 2 numbers of labels x 2 seeds), a failed run recorded while the rest go on, resume skipping
finished runs, partial collect."""

import os
import subprocess
import sys

import pytest
import yaml

from tam.errors import TamError

from .conftest import write_grid

AXES = {"fusion": ["ctm", "concat"], "labelled": [20, 40], "seed": [0, 1]}


def tam(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "tam", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=900)


@pytest.mark.slow
def test_grid_run_list_collect_resume_and_failure(tmp_path, tiny_world):
    grid = write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", AXES, [["ctm", ">", "concat"]])
    listed = tam("experiment", "list", str(grid), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert len([x for x in listed.stdout.splitlines() if x.startswith("tam train ")]) == 8
    runs = tmp_path / "out" / "runs"
    broken = runs / "fusion-concat__labelled-40__seed-1"
    (broken / "last.pt").write_bytes(b"not a checkpoint")  # this run cannot resume: it fails, the others go on

    first = tam("experiment", "run", str(grid), "--jobs", "2", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    assert "7 run(s) done, 0 already finished (skipped), 1 failed" in first.stdout
    assert (broken / "error.txt").is_file() and not (broken / "results.json").exists()
    done = sorted(runs.glob("*/results.json"))
    assert len(done) == 7
    stamps = {p: p.stat().st_mtime_ns for p in done}

    partial = tam("experiment", "collect", str(grid), cwd=tmp_path)
    assert partial.returncode == 0, partial.stderr
    assert f"failed: {broken.name}:" in partial.stdout and "| ctm > concat |" in partial.stdout
    report = (tmp_path / "out" / "report" / "index.md").read_text()
    assert "1 failed and 0 missing runs are left out" in report and "(1/2)" in report

    (broken / "last.pt").unlink()
    second = tam("experiment", "run", str(grid), "--jobs", "2", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 run(s) done, 7 already finished (skipped), 0 failed" in second.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # finished runs were not touched
    assert not (broken / "error.txt").exists()

    data = yaml.safe_load(grid.read_text())
    data["axes"]["seed"] = [0, 1, 2]  # a seed not run yet: collect draws what exists and names the rest
    grid.write_text(yaml.safe_dump(data))
    more = tam("experiment", "collect", str(grid), cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "missing (4 not run yet)" in more.stdout and "(2/3)" in more.stdout
    assert (tmp_path / "out" / "report" / "index.html").is_file()


def test_world_section_is_generated_before_the_runs(tmp_path):
    from tam.experiment.grid import load_grid
    from tam.experiment.run import prepare

    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "w", "out": str(tmp_path / "out"),
        "world": {"name": "cooccur", "out": str(tmp_path / "world"), "train": 30, "test": 20,
                  "dims": {"image": 4, "audio": 4}, "rank": 2},
        "set": {"model.modalities": ["image", "audio"]}, "axes": {"labelled": [10], "seed": [0]}}))
    g = load_grid(grid)
    assert g.runs[0].store == str(tmp_path / "world" / "store")
    prepare(g)
    text = (g.runs[0].run_dir / "labels.csv").read_text().splitlines()
    assert len(text) == 1 + 10 + 20 and (tmp_path / "world" / "store" / "manifest.json").is_file()
    bad = yaml.safe_load(grid.read_text())
    bad["world"]["colour"] = "red"
    grid.write_text(yaml.safe_dump(bad))
    with pytest.raises(TamError, match="world: needs name"):
        prepare(load_grid(grid))


def test_a_changed_world_is_refused_not_reused(tmp_path):
    from tam.experiment.grid import load_grid
    from tam.experiment.run import prepare

    data = {"name": "w", "out": str(tmp_path / "out"),
            "world": {"name": "cooccur", "out": str(tmp_path / "world"), "train": 30, "test": 20,
                      "dims": {"image": 4, "audio": 4}, "rank": 2},
            "set": {"model.modalities": ["image", "audio"]}, "axes": {"labelled": [10], "seed": [0]}}
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump(data))
    prepare(load_grid(grid))
    prepare(load_grid(grid))  # the same settings: the world is reused
    data["world"]["train"] = 40
    grid.write_text(yaml.safe_dump(data))
    with pytest.raises(TamError, match=r"made with other settings \(differs in train\)"):
        prepare(load_grid(grid))
    (tmp_path / "world" / "grid_world.json").unlink()  # a world made before grid_world.json: its world.json tells
    with pytest.raises(TamError, match="made with other settings"):
        prepare(load_grid(grid))


def test_run_folders_started_from_other_settings_are_refused_and_left_out(tmp_path, tiny_world):
    import json
    import shutil

    from tam.experiment.collect import gather
    from tam.experiment.grid import load_grid
    from tam.experiment.run import check_stale, fingerprint, prepare

    labels = tmp_path / "labels.csv"
    shutil.copy(tiny_world[1], labels)
    path = write_grid(tmp_path / "g.yaml", (tiny_world[0], labels), tmp_path / "out",
                      {"fusion": ["ctm"], "seed": [0, 1]})
    g = load_grid(path)
    for r in g.runs:  # as if run_grid had run them
        r.run_dir.mkdir(parents=True)
        (r.run_dir / "grid.json").write_text(json.dumps(fingerprint(g, r)))
        (r.run_dir / "results.json").write_text(json.dumps({"test": {"accuracy": 0.9}, "val": {"accuracy": 0.9},
                                                            "n": {"train": 50, "val": 10}}))
    check_stale(g)
    assert [o.status for o in gather(g).outcomes] == ["done", "done"]

    data = yaml.safe_load(path.read_text())
    data["set"]["model.d"] = 32  # another config under the same run names
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TamError, match=r"2 run folder\(s\) were started from other settings .*differs in model.d"):
        prepare(load_grid(path))
    outs = gather(load_grid(path)).outcomes
    assert [o.status for o in outs] == ["failed", "failed"] and "left out" in outs[0].error

    data["set"]["model.d"] = 16
    path.write_text(yaml.safe_dump(data))
    check_stale(load_grid(path))
    labels.write_text(labels.read_text().replace(",train", ",test", 1))  # the same file name, other labels
    with pytest.raises(TamError, match="differs in labels_sha256"):
        check_stale(load_grid(path))


def test_an_option_added_after_a_run_is_its_default_not_other_settings(tmp_path, tiny_world):
    import json

    from tam.experiment.grid import load_grid
    from tam.experiment.run import check_stale, fingerprint

    path = write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", {"fusion": ["ctm"], "seed": [0]})
    g = load_grid(path)
    record = fingerprint(g, g.runs[0])
    del record["config"]["train"]["init_norm"]  # a folder started by code without the option
    g.runs[0].run_dir.mkdir(parents=True)
    (g.runs[0].run_dir / "grid.json").write_text(json.dumps(record))
    check_stale(g)  # it ran as the default does
    data = yaml.safe_load(path.read_text())
    data["set"]["train.init_norm"] = "data"  # the grid now asks for another value than the default
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TamError, match="differs in train.init_norm"):
        check_stale(load_grid(path))


def _run_files(run_dir):
    return sorted(p.name for p in run_dir.iterdir() if p.name != "log.txt")


@pytest.mark.slow
def test_seeds_of_a_cell_train_in_one_process_with_the_same_run_folders(tmp_path, tiny_world):
    import json

    axes = {"fusion": ["ctm"], "seed": [0, 1]}
    grouped = write_grid(tmp_path / "a.yaml", tiny_world, tmp_path / "a", axes)
    alone = write_grid(tmp_path / "b.yaml", tiny_world, tmp_path / "b", axes, extra={"batch": 1})
    for g in (grouped, alone):
        r = tam("experiment", "run", str(g), "--jobs", "1", cwd=tmp_path)
        assert r.returncode == 0 and "2 run(s) done" in r.stdout, r.stdout + r.stderr
    assert [p.name for p in (tmp_path / "a" / "groups").iterdir()] == ["fusion-ctm__seeds-0+1"]
    assert not (tmp_path / "b" / "groups").exists()
    for seed in (0, 1):
        a, b = (tmp_path / x / "runs" / f"fusion-ctm__seed-{seed}" for x in "ab")
        assert _run_files(a) == _run_files(b)
        assert "one vmap step for all" in (a / "log.txt").read_text()
        assert (a / "log.txt").read_text().startswith("tam train ")  # its own command: it reproduces the run alone
        ra, rb = (json.loads((x / "results.json").read_text()) for x in (a, b))
        assert ra["best_epoch"] == rb["best_epoch"] and ra["test"] == pytest.approx(rb["test"], rel=1e-4, abs=1e-5)
        assert ra["config"] == rb["config"]
        ma, mb = ((x / "metrics.csv").read_text().splitlines() for x in (a, b))
        assert ma[0] == mb[0] and len(ma) == len(mb) == 3
        for x, y in zip(ma[1:], mb[1:], strict=True):
            assert [float(v) for v in x.split(",")] == pytest.approx([float(v) for v in y.split(",")], rel=1e-4,
                                                                     abs=1e-5)


def test_seed_groups_and_the_batch_key(tmp_path, tiny_world):
    from tam.experiment.grid import load_grid, seed_groups

    grid = load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", AXES, extra={"batch": 3}))
    groups = seed_groups(grid.runs, grid.batch)
    assert [[r.name for r in g] for g in groups][:2] == [["fusion-ctm__labelled-20__seed-0",
                                                          "fusion-ctm__labelled-20__seed-1"],
                                                         ["fusion-ctm__labelled-40__seed-0",
                                                          "fusion-ctm__labelled-40__seed-1"]]
    assert len(groups) == 4 and [len(g) for g in seed_groups(grid.runs, 1)] == [1] * 8
    with pytest.raises(TamError, match="batch must be a positive whole number"):
        load_grid(write_grid(tmp_path / "h.yaml", tiny_world, tmp_path / "out", AXES, extra={"batch": 0}))


def test_processes_share_data_within_the_longest_group_and_start_longest_first(tmp_path, tiny_world):
    """Cells on the same data (labelled, seeds) share a process while it stays within the longest cell's cost; the
    processes start longest first (training rows x epochs), so the pool's tail is short; each run exactly once."""
    from tam.experiment.grid import load_grid, seed_groups
    from tam.experiment.run import _group_name, processes

    axes = {"fusion": ["ctm", "concat", "joint"], "labelled": [10, 20, "all"], "seed": [0, 1]}
    grid = load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", axes))
    procs = processes(seed_groups(grid.runs, grid.batch))
    names = [_group_name(p) for p in procs]
    assert names == ["fusion-ctm+concat+joint__labelled-20__seeds-0+1", "fusion-ctm__labelled-all__seeds-0+1",
                     "fusion-concat__labelled-all__seeds-0+1", "fusion-joint__labelled-all__seeds-0+1",
                     "fusion-ctm+concat+joint__labelled-10__seeds-0+1"]
    assert sorted(r.name for p in procs for r in p) == sorted(r.name for r in grid.runs)
    alone = processes(seed_groups(grid.runs, grid.batch), share=False)
    assert [len(p) for p in alone] == [2] * 9 and _group_name(alone[-1]) == "fusion-joint__labelled-10__seeds-0+1"
