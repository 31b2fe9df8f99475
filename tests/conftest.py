"""Test-wide fixtures: a small synthetic world (features at the paper's dims) and its training config."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """(store, labels) of a 96-video synthetic world, generated once per test session."""
    from tam.demo.worlds.features import WorldSpec, make_world

    return make_world(tmp_path_factory.mktemp("world"), WorldSpec(n_videos=96, min_segments=3, max_segments=12))


@pytest.fixture
def tiny_config(tiny_world):
    """A small, fast config on the tiny world (dropout 0 so that runs are exactly comparable)."""
    from tam.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from tam.demo.worlds.features import CLASSES

    store, labels = tiny_world
    return RunConfig(model=ModelConfig(d=16, layers=1, heads=2, T=8, dropout=0.0),
                     data=DataConfig(store=str(store), labels=str(labels), classes=list(CLASSES)),
                     optim=OptimConfig(lr=1e-3, batch_size=8, epochs=3),
                     train=TrainConfig(num_workers=0, progress=False, device="cpu"))
