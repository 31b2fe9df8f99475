"""The ray engine on a real cluster (`conftest.cluster`), against the local engine on the same inputs: the comment
corpus byte for byte, a grid's results per run (seed groups as one process, as locally), extracted arrays bit for
bit. In each stage's job the driver is killed with -9 mid-job and started again, then the worker node is killed
while the second driver runs: the outputs are still those of the local engine, nothing missing or duplicated."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from .conftest import TESTS, finish, load_conftest, tam

REALDATA = TESTS.parent.parent / "shared" / "realdata"
DUTIR = REALDATA / "lexicon" / "dutir" / "情感词汇本体.stxupengyu.xlsx"


def _wait_for(check, proc, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not check():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def _kill_driver_then_node(cluster, args: tuple, cwd: Path, done: Callable[[], int], total: int) -> tuple[int, str]:
    """Run `tam ARGS` on the cluster: kill the driver (-9) once `done()` items are written, start it again, kill
    the worker node once it has written more; returns the items done before the first kill and the second
    driver's output."""
    node = cluster.live_node()
    driver = tam(*args, "--engine", "ray", "--address", cluster.address, cwd=cwd)
    _wait_for(lambda: done() >= 1, driver)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    first = done()
    assert first < total, "the job finished before the driver was killed"
    driver = tam(*args, "--engine", "ray", "--address", cluster.address, cwd=cwd)
    _wait_for(lambda: done() > first, driver)
    cluster.kill_node(node)
    return first, finish(driver)


def test_corpus_on_ray_survives_the_driver_and_a_node_killed(cluster, tmp_path):
    from tam.comments.corpus import GROUP_BYTES, prepare_corpus

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(10):  # synthetic sources of a task each (padded with comments over the length limit: dropped)
        pad = [(99, "啊" * (GROUP_BYTES // 9))] * 3  # 3 x 350 KB
        said = ((1, "我今天很开心"), (50, "我真的好难过呀"), (90 + i, "很开心啊"), *pad)
        rows = "".join(f"v{i},{t},{x}\n" for t, x in said)
        (folder / f"s{i}.csv").write_text("video,time,text\n" + rows, encoding="utf-8")
    (folder / "broken.xml").write_text("<i><d p=", encoding="utf-8")  # reported by both engines, not lost
    inputs = [str(folder)] + [str(p) for p in [REALDATA / "danmaku" / "biliass-corpus"] if p.is_dir()]
    lexicon = DUTIR if DUTIR.is_file() else tmp_path / "lex.txt"
    if not DUTIR.is_file():
        lexicon.write_text("开心\n难过\n", encoding="utf-8")
    local = prepare_corpus(inputs, tmp_path / "local", str(lexicon), n_per_polarity=50, workers=1, progress=False)
    parts = tmp_path / "ray" / "parts"
    args = ("comments", "prepare", *inputs, "--lexicon", str(lexicon), "--out", str(tmp_path / "ray"), "--n", "50",
            "--no-progress")
    markers = lambda: sum(not p.name.startswith("lexicon-") for p in parts.glob("*.json"))  # noqa: E731
    _kill_driver_then_node(cluster, args, tmp_path, markers, 10)
    assert local["comments_written"] > 0
    for name in ("comments.parquet", "segments.parquet", "vocab.json"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    stats = json.loads((tmp_path / "ray" / "stats.json").read_text())
    assert stats["sources"] == local["sources"] and stats["sources_failed"] == local["sources_failed"]
    assert stats["comments_skipped"] == local["comments_skipped"] and stats["comments_skipped"]["too_long"] == 30
    assert stats["sources_resumed"] > 0  # the first driver's sources were not done again
    assert len(stats["sources_failed"]) == 1 and "broken.xml" in stats["sources_failed"][0]


def test_the_local_engine_never_imports_ray(tmp_path):
    code = ("import sys; from tam.cli import main; from tam.commands import comments, experiment, extract; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args, error", [((), "give video files"), (("v", "--image", "nope"), "--image 'nope'"),
                                         (("v", "--workers", "0"), "--workers 0")])
def test_extract_on_ray_checks_its_arguments_before_joining_the_cluster(tmp_path, args, error):
    """Nothing listens at the address (joining it would wait for minutes): the argument's own error, at once."""
    done = subprocess.run([sys.executable, "-m", "tam", "extract", *args, "-o", "out", "--engine", "ray", "--address",
                           "127.0.0.1:9"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and error in done.stderr, done.stderr


@pytest.mark.slow
def test_grid_on_ray_in_seed_groups_survives_the_driver_and_a_node_killed(cluster, tmp_path):
    from tam.demo.worlds.power import PowerSpec, make_power_world
    from tam.experiment.grid import load_grid
    from tam.experiment.run import run_grid

    write_grid = load_conftest("experiment").write_grid
    world = make_power_world(tmp_path / "world", PowerSpec(world="timing", n_train=60, n_test=40,
                                                           dims={"image": 8, "audio": 8}, rank=4, min_segments=8,
                                                           max_segments=10))
    axes = {"fusion": ["ctm", "concat"], "seed": [0, 1]}  # two cells of two seeds: a process each on both engines
    run_grid(load_grid(write_grid(tmp_path / "local.yaml", world, tmp_path / "local", axes)), jobs=2)
    grid = write_grid(tmp_path / "ray.yaml", world, tmp_path / "ray", axes)
    runs = tmp_path / "ray" / "runs"
    # progress = epochs written (metrics.csv rows, 4 runs x 2 epochs): the runs' last.pt all appear after the first
    # epoch, so counting them left no room between "some written" and "all written" (a group's seeds write together,
    # and the other group's task may still write while the killed driver's job is torn down)
    first, out = _kill_driver_then_node(cluster, ("experiment", "run", str(grid)), tmp_path,
                                        lambda: sum(max(0, len(p.read_text().splitlines()) - 1)
                                                    for p in runs.glob("*/metrics.csv")), 8)
    finished = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/results.json")}
    assert "0 failed" in out and "(skipped)" in out, out[-2000:]
    assert len(list((tmp_path / "ray" / "groups").iterdir())) == 2  # seed groups, as the local engine runs them
    for run in (tmp_path / "local" / "runs").iterdir():
        a, b = (json.loads((d / run.name / "results.json").read_text()) for d in (tmp_path / "local" / "runs", runs))
        for key in ("data_wait_seconds", "code_version"):  # timing; the checkout when the run started
            a.pop(key), b.pop(key)
        assert a == b, run.name
    assert sorted(finished) == sorted(p.name for p in (tmp_path / "local" / "runs").iterdir())


@pytest.mark.slow
def test_extraction_on_ray_survives_the_driver_and_a_node_killed(cluster, tmp_path):
    from tam.features.store import FeatureStore

    make_video = load_conftest("encoders").make_video
    (tmp_path / "v").mkdir()
    for i in range(8):
        make_video(tmp_path / "v" / f"c{i}.mp4", seconds=2.0, change_at=0.5 + 0.2 * i,
                   tone_at=1.0 if i % 2 else None)
    common = ("extract", "v", "--tiny", "--batch", "1", "--threads", "1", "--no-progress")
    local = finish(tam(*common, "-o", "local", cwd=tmp_path))
    entries = tmp_path / "ray" / "videos"

    def written() -> int:
        return sum(not p.name.startswith(".") for p in entries.iterdir()) if entries.is_dir() else 0

    first, out = _kill_driver_then_node(cluster, (*common, "-o", "ray"), tmp_path, written, 8)
    counts = {k: int(n) for k, n in re.findall(r"^(videos written|already in the store|failed) +(\d+)$", out, re.M)}
    assert counts["failed"] == 0 and counts["videos written"] + counts["already in the store"] == 8, out
    assert counts["already in the store"] >= first, out  # the first driver's videos not extracted again
    assert out.count("random-init") == local.count("random-init") == 1  # the warning once, as locally
    a, b = FeatureStore.open(tmp_path / "local"), FeatureStore.open(tmp_path / "ray")
    assert a.videos() == b.videos() and len(a.videos()) == 8
    assert [p.name for p in entries.iterdir() if p.name.startswith(".")] == []  # no partial entry left
    for v in a.videos():
        x, y = a.read(v), b.read(v)
        assert np.array_equal(x.times, y.times) and x.present == y.present, v
        for m, feats in x.features.items():
            assert np.array_equal(np.asarray(feats), np.asarray(y.features[m])), (v, m)
    manifests = [json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("local", "ray")]
    for m in manifests:
        m.pop("code_version")  # the checkout when each started
    assert manifests[0] == manifests[1]
