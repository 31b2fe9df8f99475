"""Per-sample random streams: a sample's dropout / stochastic-depth / noise draws do not depend on its batch."""

import pytest
import torch

from tam.config import ModelConfig
from tam.models.model import build_model
from tam.models.stochastic import Dropout, DropPath, SampleRNG, depth_rates, gaussian_noise, sample_rng

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



def _chunked(seeds, requests, chunk=SampleRNG.CHUNK):
    """The draws of a sample as chunked refills gave them: a request (kind, n) that does not fit the rest of its
    kind's chunk skips that rest and starts a new chunk of max(n, chunk) numbers."""
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    out, bufs = [], {}
    for kind, n in requests:
        buf, pos = bufs.get(kind, (None, 0))
        if buf is None or pos + n > buf.shape[1]:
            draw = torch.rand if kind == "uniform" else torch.randn
            buf, pos = torch.stack([draw(max(n, chunk), generator=g) for g in gens]), 0
        out.append(buf[:, pos:pos + n])
        bufs[kind] = (buf, pos + n)
    return out


@pytest.mark.parametrize("used", [None, 5, 150, 70_000, 1 << 20])
@pytest.mark.parametrize("normal", [False, True])
def test_lazy_uniform_draws_are_the_chunked_ones_whatever_the_previous_step_took(monkeypatch, used, normal):
    """A sample's numbers are those of chunked refills (uniform requests below, at and above a chunk, and one that
    overflows a chunk's rest; with normal draws between them or not), whatever the previous SampleRNG took (`used`,
    the size of the lazy uniform draws)."""
    requests = [("uniform", n) for n in (3, 100, 7, 65_000, 600, 70_000, 1, 1)]
    if normal:
        requests[1:1], requests[5:5] = [("normal", 5)], [("normal", 70_000)]
    monkeypatch.setattr(SampleRNG, "used", {} if used is None else {"uniform": used})
    rng = SampleRNG([3, 11])
    got = [rng.rand(n) if kind == "uniform" else rng.randn(n) for kind, n in requests]
    for a, b in zip(got, _chunked([3, 11], requests), strict=True):
        assert torch.equal(a, b)
    assert SampleRNG.used["uniform"] == sum(n for kind, n in requests if kind == "uniform")
