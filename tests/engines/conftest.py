"""A real Ray cluster for the engine tests: a head (2 CPUs) and a worker node (1 CPU) started with `ray start` on
loopback, an 80 MB object store each, shared by the module and stopped at its end, leaving no process behind. The
head has room for an extraction actor and its decoding task when the worker node has been killed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
           RAY_USAGE_STATS_ENABLED="0")  # the drivers take 127.0.0.1 as their address, as the nodes do


def load_conftest(folder: str):
    """tests/FOLDER/conftest.py, loaded by path: conftests are not importable modules."""
    spec = importlib.util.spec_from_file_location(f"tam_tests_engines_{folder}", TESTS / folder / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tam(*args: str, cwd: Path) -> subprocess.Popen:
    """`python -m tam ARGS` started in `cwd` (a driver that a test may kill)."""
    return subprocess.Popen([sys.executable, "-m", "tam", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def cluster():
    from tam.engines.cluster import LocalCluster, _living, _tree

    c = LocalCluster(head_cpus=2, node_cpus=(1,), object_store_mb=80)
    groups = [p.pid for p in c.nodes]
    yield c
    pids = [p for g in groups for p in _tree(g)]
    c.stop()
    assert _living(pids) == [] and not c.temp.exists()
