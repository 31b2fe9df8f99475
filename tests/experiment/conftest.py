import pytest
import yaml

from tam.demo.worlds.power import PowerSpec, make_power_world

TINY = {"image": 8, "audio": 8}


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A tiny timing world: 60 training rows, 40 test rows, 8-dim modalities."""
    root = tmp_path_factory.mktemp("world")
    return make_power_world(root, PowerSpec(world="timing", n_train=60, n_test=40, dims=TINY, rank=4,
                                            min_segments=8, max_segments=10))


def write_grid(path, world, out, axes, claims=None, extra=None):
    store, labels = world
    grid = {"name": "tiny", "out": str(out),
            "set": {"data.store": str(store), "data.labels": str(labels), "model.modalities": ["image", "audio"],
                    "model.d": 16, "model.layers": 1, "model.heads": 2, "model.T": 10, "optim.epochs": 2,
                    "optim.batch_size": 8, "train.num_workers": 0, "train.device": "cpu"},
            "axes": axes, "claims": claims or []}
    grid.update(extra or {})
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path
