"""Readouts of the head (tam.models.heads, model.readout): shapes, masks, gradients, the f^0 reference."""

from __future__ import annotations

import pytest
import torch

from tam.config import ModelConfig
from tam.models.heads import SegmentPool
from tam.models.model import build_model

DIMS = {"image": 6, "motion": 5, "audio": 4}


def _batch(B: int = 3, T: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(B, T, D, generator=g) for m, D in DIMS.items()}
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 3:] = False  # a short video: two padded segments
    valid[2, 1:] = False  # one valid segment
    return x, valid, torch.ones(B, 3, dtype=torch.bool)


@pytest.mark.parametrize("kind", ["mean", "attentive"])
def test_pool_weights_sum_to_one_and_skip_padding(kind):
    pool = SegmentPool(8, kind)
    f = torch.randn(3, 6, 8)
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[1, 4:] = False
    w = pool.weights(f, valid)
    assert w.shape == (3, 5)
    assert torch.allclose(w.sum(-1), torch.ones(3))
    assert (w[1, 3:] == 0).all()
    assert pool(f, valid).shape == (3, 8)


def test_pool_mean_is_the_mean_of_valid_segments():
    f = torch.randn(2, 5, 4)
    valid = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = SegmentPool(4, "mean")(f, valid)
    assert torch.allclose(out[0], f[0, 1:].mean(0), atol=1e-6)
    assert torch.allclose(out[1], f[1, 1:3].mean(0), atol=1e-6)


def test_pool_no_valid_segment_is_finite_zero():
    f = torch.randn(1, 4, 8)
    valid = torch.tensor([[True, False, False, False]])
    assert torch.equal(SegmentPool(8, "attentive")(f, valid), torch.zeros(1, 8))


@pytest.mark.parametrize("readout", ["mean", "attentive"])
@pytest.mark.parametrize("fusion", ["ctm", "concat"])
def test_padded_segments_never_influence_the_output(readout, fusion):
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion=fusion, d=8, layers=1, heads=2, T=5, readout=readout), DIMS, 4).eval()
    x, valid, present = _batch()
    out = model(x, valid, present)
    x2 = {m: v.clone() for m, v in x.items()}
    for v in x2.values():
        v[~valid] = 1e3 * torch.randn_like(v[~valid])  # garbage in the padded segments
    assert torch.allclose(model(x2, valid, present), out, atol=1e-5)
    assert out.shape == (3, 4)


@pytest.mark.parametrize("readout", ["f0", "mean", "attentive"])
def test_every_parameter_gets_a_gradient(readout):
    torch.manual_seed(0)
    model = build_model(ModelConfig(d=8, layers=1, heads=2, T=5, readout=readout, dropout=0.0), DIMS, 4)
    x, valid, present = _batch()
    model(x, valid, present).pow(2).sum().backward()
    none = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not none, none
    assert any(n.startswith("head.pool.") for n, _ in model.named_parameters()) == (readout == "attentive")


def test_f0_readout_is_the_fusions_f0_and_the_pooled_one_is_what_forward_features_gives():
    torch.manual_seed(0)
    x, valid, present = _batch()
    ref = build_model(ModelConfig(d=8, layers=1, heads=2, T=5), DIMS, 4).eval()
    fo = ref.forward_features(x, valid, present)
    assert torch.equal(fo.f0, fo.f[:, 0]) and ref.head.pool is None
    att = build_model(ModelConfig(d=8, layers=1, heads=2, T=5, readout="attentive"), DIMS, 4).eval()
    fo = att.forward_features(x, valid, present)
    assert torch.allclose(att.forward_head(fo.f0), att(x, valid, present))
    assert torch.allclose(fo.f0, att.head.pool(fo.f, fo.valid))
