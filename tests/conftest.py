"""Test-wide fixtures: a small synthetic world (features at the paper's dims) and its training config; one run of
`tam demo --quick` shared by the tests that check it (tests/e2e)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: 2 pytest-xdist workers share 2 cores, one thread each
    os.environ["OMP_NUM_THREADS"] = "1"

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


QUICK_DEMO_TESTS = ("tests/e2e/test_demo_full.py::", "tests/e2e/test_cli.py::test_demo_quick")  # use quick_demo
FOLDER_UNITS = ("tests/serve/", "tests/infer/", "tests/hub/")  # their conftests build a world (and servers) per worker
SLOW_FIRST = ("tests/engines/test_ray_engine.py", "tests/experiment/test_run.py",
              "tests/train/test_multiseed.py", "tests/pretrain/test_pretrain_command.py",
              "tests/encoders/test_extract.py", "tests/serve/", "tests/train/test_distributed.py", "tests/hub/",
              "tests/infer/", "quick_demo",
              "tests/models/test_stochastic.py", "tests/train/test_checkpoint.py", "tests/e2e/test_tune_cli.py",
              "tests/train/test_tune.py", "tests/train/test_loop.py")  # the longest units (CPU seconds, 2026-12-08),
# longest first (below); test_loop.py was the longest (231 CPU-s) before it shared its fits and trained on one thread


def pytest_collection_modifyitems(config, items):
    """Every test of the shared quick demo is listed in QUICK_DEMO_TESTS (the scheduler below keeps them together)."""
    stray = [i.nodeid for i in items if "quick_demo" in i.fixturenames and not i.nodeid.startswith(QUICK_DEMO_TESTS)]
    if stray:
        raise pytest.UsageError(f"tests/conftest.py: add {stray} to QUICK_DEMO_TESTS (tests that use quick_demo)")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n 2 --dist loadfile` (the Makefile's test target) with larger units where a fixture is costly: a file's tests
    run on one worker (its module fixtures are built once), the shared quick demo's tests on one worker (the demo runs
    once), and so do the tests of each folder of FOLDER_UNITS (their session fixtures are built once, not on both
    workers). xdist's own `--dist loadgroup` does not group on pytest 9.2 (pytest-xdist issue 1386).
    Longest first: the units of SLOW_FIRST (measured) in its order, then those with more tests marked slow, then
    xdist's order (most tests first). xdist alone started the longest units, which have few tests, last, and one
    worker then ran them alone at the end."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    rank, root, slow = {unit: i for i, unit in enumerate(SLOW_FIRST)}, Path(config.rootpath), {}

    def marked_slow(unit: str) -> int:
        if unit not in slow:
            files = sorted((root / unit).glob("test_*.py")) if unit.endswith("/") else [root / unit]
            slow[unit] = sum(f.read_text(errors="replace").count("mark.slow") for f in files if f.is_file())
        return slow[unit]

    class LongestFirst(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(QUICK_DEMO_TESTS):
                return "quick_demo"
            return next((f for f in FOLDER_UNITS if nodeid.startswith(f)), None) or super()._split_scope(nodeid)

        def _assign_work_unit(self, node) -> None:
            first = min(self.workqueue, key=lambda u: (rank.get(u, len(rank)), -marked_slow(u)))
            self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return LongestFirst(config, log)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread_per_worker():
    """Under pytest-xdist, each worker starts with one torch thread (the workers share the cores)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """(store, labels) of a 96-video synthetic world, generated once per test session."""
    from tam.demo.worlds.features import WorldSpec, make_world

    return make_world(tmp_path_factory.mktemp("world"), WorldSpec(n_videos=96, min_segments=3, max_segments=12))


@pytest.fixture
def tiny_config(tiny_world):
    """A small, fast config on the tiny world (dropout 0 so that runs are exactly comparable; one torch thread: the
    suite's processes share 2 cores, and `train.threads` 0 would give each of them both)."""
    from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import CLASSES

    store, labels = tiny_world
    return RunConfig(model=ModelConfig(d=16, layers=1, heads=2, T=8, dropout=0.0),
                     data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
                     optim=OptimConfig(lr=1e-3, batch_size=8, epochs=3),
                     train=TrainConfig(num_workers=0, progress=False, device="cpu", threads=1))


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """(out folder, finished process) of one `tam demo --quick` through the real CLI, run once per test session
    (under pytest-xdist too: its tests form one unit, see `pytest_xdist_make_scheduler`)."""
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "tam", "demo", "--quick", "--out", str(tmp / "out")],
                       capture_output=True, text=True, cwd=tmp, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return tmp / "out", p
