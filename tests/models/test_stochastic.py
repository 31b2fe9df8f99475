"""Per-sample random streams: a sample's dropout / stochastic-depth / noise draws do not depend on its batch."""

import pytest
import torch

from tam.config import ModelConfig
from tam.models.model import build_model
from tam.models.stochastic import Dropout, DropPath, depth_rates, gaussian_noise, sample_rng

DIMS = {"image": 12, "motion": 20, "audio": 6}


def _batch(B=5, T=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(B, T, D, generator=g) for m, D in DIMS.items()}
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 5:] = False
    present = torch.ones(B, 3, dtype=torch.bool)
    present[2, 2] = False
    return x, valid, present


@pytest.mark.parametrize("fusion", ["ctm", "concat", "divide", "joint"])
def test_a_sample_draws_the_same_masks_in_any_batch(fusion):
    cfg = ModelConfig(fusion=fusion, d=16, layers=2, heads=4, T=8, dropout=0.3, drop_path=0.3, noise=0.5)
    torch.manual_seed(0)
    model = build_model(cfg, DIMS, 4).train()
    x, valid, present = _batch()
    seeds = torch.tensor([11, 22, 33, 44, 55])
    with sample_rng(seeds):
        whole = model(x, valid, present)
    with sample_rng(seeds[:2]):  # the same samples split into two "processes"
        first = model({m: v[:2] for m, v in x.items()}, valid[:2], present[:2])
    with sample_rng(seeds[2:]):
        second = model({m: v[2:] for m, v in x.items()}, valid[2:], present[2:])
    torch.testing.assert_close(torch.cat([first, second]), whole, atol=1e-5, rtol=1e-5)
    with sample_rng(seeds):  # the same seeds draw the same masks; other seeds other masks
        assert torch.equal(model(x, valid, present), whole)
    with sample_rng(seeds + 1):
        assert not torch.allclose(model(x, valid, present), whole)
    # eval mode: every stochastic layer is the identity
    model.eval()
    with sample_rng(seeds):
        a = model(x, valid, present)
    torch.testing.assert_close(a, model(x, valid, present))


def test_dropout_and_drop_path_statistics():
    x = torch.ones(4000, 10)
    with sample_rng(list(range(4000))):
        y = Dropout(0.25).train()(x)
        z = DropPath(0.25).train()(x)
        n = gaussian_noise(torch.zeros(4000, 10), 0.5, True)
    keep = torch.tensor(1 / 0.75)
    assert set(y.unique().tolist()) == {0.0, keep.item()} and (y == 0).float().mean() == pytest.approx(0.25, abs=0.02)
    assert ((z == 0).all(1) | (z == keep).all(1)).all()  # a whole sample's branch is dropped or kept
    assert (z[:, 0] == 0).float().mean() == pytest.approx(0.25, abs=0.03)
    assert n.std().item() == pytest.approx(0.5, rel=0.05)
    # outside sample_rng the layers use the global RNG (pre-training), and eval mode is the identity
    torch.manual_seed(0)
    a = Dropout(0.5).train()(x)
    torch.manual_seed(0)
    assert torch.equal(a, torch.nn.functional.dropout(x, 0.5, True))
    assert torch.equal(Dropout(0.5).eval()(x), x) and torch.equal(DropPath(0.5).eval()(x), x)


def test_depth_rates_are_linear_from_zero():
    assert depth_rates(0.2, 3) == pytest.approx([0.0, 0.1, 0.2])
    assert depth_rates(0.2, 1) == [0.2] and depth_rates(0.0, 4) == [0.0] * 4


def test_first_axis_must_hold_whole_samples():
    with sample_rng([1, 2]), pytest.raises(ValueError, match="multiple"):
        Dropout(0.1).train()(torch.ones(3, 4))
