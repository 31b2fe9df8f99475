"""The ray engine on a real two-node cluster (`conftest.cluster`), against the local engine on the same inputs: the
comment corpus byte for byte, a grid's results per run, extracted arrays bit for bit; a driver killed with -9 and
started again, then the worker process of a run killed (the grid); a worker node killed during a job (extraction)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
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
        time.sleep(0.1)


def test_corpus_on_ray_is_byte_identical(cluster, tmp_path):
    from tam.comments.corpus import prepare_corpus

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):  # synthetic sources, and the real danmaku when ../shared is there
        said = ((1, "我今天很开心"), (50, "我真的好难过呀"), (90 + i, "很开心啊"))
        rows = "".join(f"v{i},{t},{x}\n" for t, x in said)
        (folder / f"s{i}.csv").write_text("video,time,text\n" + rows, encoding="utf-8")
    (folder / "broken.xml").write_text("<i><d p=", encoding="utf-8")  # reported by both engines, not lost
    inputs = [str(folder)] + [str(p) for p in [REALDATA / "danmaku" / "biliass-corpus"] if p.is_dir()]
    lexicon = DUTIR if DUTIR.is_file() else tmp_path / "lex.txt"
    if not DUTIR.is_file():
        lexicon.write_text("开心\n难过\n", encoding="utf-8")
    local = prepare_corpus(inputs, tmp_path / "local", str(lexicon), n_per_polarity=50, workers=1, progress=False)
    finish(tam("comments", "prepare", *inputs, "--lexicon", str(lexicon), "--out", str(tmp_path / "ray"), "--n", "50",
               "--engine", "ray", "--address", cluster.address, "--no-progress", cwd=tmp_path))
    assert local["comments_written"] > 0
    for name in ("comments.parquet", "segments.parquet", "vocab.json"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    stats = json.loads((tmp_path / "ray" / "stats.json").read_text())
    assert stats["sources"] == local["sources"] and stats["sources_failed"] == local["sources_failed"]
    assert len(stats["sources_failed"]) == 1 and "broken.xml" in stats["sources_failed"][0]


def test_the_local_engine_never_imports_ray(tmp_path):
    code = ("import sys; from tam.cli import main; from tam.commands import comments, experiment, extract; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def _run_processes(folder: Path) -> list[tuple[int, int]]:
    """(pid, parent pid) of the tied `tam train` processes (`tam.engines.TIED`) of runs in `folder`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            parent = int((cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if any(b"prctl" in a for a in args) and any(str(folder).encode() in a for a in args):
            found.append((int(cmdline.parent.name), parent))
    return found


@pytest.mark.slow
def test_grid_on_ray_resumes_after_the_driver_and_a_worker_are_killed(cluster, tmp_path):
    from tam.demo.worlds.power import PowerSpec, make_power_world
    from tam.experiment.grid import load_grid
    from tam.experiment.run import run_grid

    write_grid = load_conftest("experiment").write_grid
    world = make_power_world(tmp_path / "world", PowerSpec(world="timing", n_train=60, n_test=40,
                                                           dims={"image": 8, "audio": 8}, rank=4, min_segments=8,
                                                           max_segments=10))
    axes = {"fusion": ["ctm", "concat"], "seed": [0]}
    run_grid(load_grid(write_grid(tmp_path / "local.yaml", world, tmp_path / "local", axes)), jobs=2)
    grid = write_grid(tmp_path / "ray.yaml", world, tmp_path / "ray", axes)
    args = ("experiment", "run", str(grid), "--engine", "ray", "--address", cluster.address)
    runs = tmp_path / "ray" / "runs"
    driver = tam(*args, cwd=tmp_path)
    _wait_for(lambda: any(runs.glob("*/results.json")), driver)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    first = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/results.json")}
    assert len(first) < 2  # killed mid-grid
    before = {pid for pid, _ in _run_processes(runs)}  # the killed driver's runs, dying with their workers
    driver = tam(*args, cwd=tmp_path)
    seen: list = []
    _wait_for(lambda: seen.extend(p for p in _run_processes(runs) if p[0] not in before) or seen, driver)
    os.kill(seen[0][1], signal.SIGKILL)  # the Ray worker process running the run left (the run dies with it)
    out = finish(driver)
    assert f"{2 - len(first)} run(s) done, {len(first)} already finished (skipped), 0 failed" in out
    for run in (tmp_path / "local" / "runs").iterdir():
        a, b = (json.loads((d / run.name / "results.json").read_text()) for d in (tmp_path / "local" / "runs", runs))
        for key in ("data_wait_seconds", "code_version"):  # timing; the checkout when the run started
            a.pop(key), b.pop(key)
        assert a == b, run.name
        started = (runs / run.name / "log.txt").read_text().count("$ tam ")
        if run.name in first:  # finished before the kill: not run again
            assert (runs / run.name / "results.json").stat().st_mtime_ns == first[run.name] and started == 1
        else:  # killed with the driver, then with its worker: resumed each time
            assert started >= 2


@pytest.mark.slow
def test_extraction_on_ray_survives_a_worker_node_killed(cluster, tmp_path):
    from tam.features.store import FeatureStore

    make_video = load_conftest("encoders").make_video
    (tmp_path / "v").mkdir()
    for i in range(6):
        make_video(tmp_path / "v" / f"c{i}.mp4", seconds=2.0, change_at=0.5 + 0.2 * i,
                   tone_at=1.0 if i % 2 else None)
    common = ("extract", "v", "--tiny", "--batch", "1", "--threads", "1", "--no-progress")
    finish(tam(*common, "-o", "local", cwd=tmp_path))
    driver = tam(*common, "-o", "ray", "--engine", "ray", "--address", cluster.address, cwd=tmp_path)
    entries = tmp_path / "ray" / "videos"
    _wait_for(lambda: entries.is_dir() and any(not p.name.startswith(".") for p in entries.iterdir()), driver)
    cluster.kill_node(0)  # the other actor was mid-way through its videos
    at_kill = len(FeatureStore.open(tmp_path / "ray").videos())
    out = finish(driver)
    counts = {k: int(n) for k, n in re.findall(r"^(videos written|already in the store|failed) +(\d+)$", out, re.M)}
    assert at_kill < 6 and counts["failed"] == 0, out
    assert counts["videos written"] + counts["already in the store"] == 6, out  # some by the actor that died
    a, b = FeatureStore.open(tmp_path / "local"), FeatureStore.open(tmp_path / "ray")
    assert a.videos() == b.videos() and len(a.videos()) == 6
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
