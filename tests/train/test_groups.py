"""Optimiser groups (tam.train.groups): fusion lr, layer-wise decay, frozen fusion."""

from __future__ import annotations

import pytest
import torch

from tam.config import ModelConfig, OptimConfig
from tam.models.model import build_model
from tam.train.groups import drop_frozen_grads, fusion_depth, param_groups

DIMS = {"image": 6, "motion": 5, "audio": 4}


def _model(fusion: str = "ctm", layers: int = 2):
    return build_model(ModelConfig(fusion=fusion, d=8, layers=layers, heads=2, T=4, readout="attentive"), DIMS, 3)


@pytest.mark.parametrize("fusion", ["ctm", "concat", "divide", "joint"])
def test_groups_cover_every_parameter_once(fusion):
    model = _model(fusion)
    groups = param_groups(model, OptimConfig(lr=1e-4, fusion_lr=1e-5, layer_decay=0.5), 2, fine_tuning=True)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert sorted({fusion_depth(n, 2) for n, _ in model.fusion.named_parameters()}) == [0, 1, 2, 3]


def test_fine_tuning_rates():
    model = _model()
    g = param_groups(model, OptimConfig(lr=1e-4, fusion_lr=1e-5), 2, fine_tuning=True)
    assert [(x["name"], x["lr"]) for x in g] == [("head", 1e-4), ("fusion", 1e-5)]
    assert any(p is model.head.pool.query.weight for p in g[0]["params"])  # the readout trains with the head
    g = param_groups(model, OptimConfig(lr=1e-4, fusion_lr=1e-5, layer_decay=0.5), 2, fine_tuning=True)
    assert {x["name"]: x["lr"] for x in g} == pytest.approx(
        {"head": 1e-4, "fusion.3": 1e-5, "fusion.2": 5e-6, "fusion.1": 2.5e-6, "fusion.0": 1.25e-6})
    g = param_groups(model, OptimConfig(lr=1e-4, fusion_lr=1e-5, layer_decay=0.5), 2, fine_tuning=False)
    assert [(x["name"], x["lr"]) for x in g] == [("head", 1e-4), ("fusion", 1e-4)]  # from scratch: one lr


def test_frozen_fusion_is_not_updated_then_is():
    torch.manual_seed(0)
    model = _model()
    cfg = OptimConfig(lr=1e-2, freeze_fusion_epochs=1)
    opt = torch.optim.AdamW(param_groups(model, cfg, 2, fine_tuning=True), weight_decay=0.1)
    x = {m: torch.randn(2, 4, D) for m, D in DIMS.items()}
    valid, present = torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for epoch in (0, 1):
        opt.zero_grad()
        model(x, valid, present).sum().backward()
        drop_frozen_grads(model, cfg, epoch, fine_tuning=True)
        opt.step()
        moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        if epoch == 0:
            assert moved and all(n.startswith("head.") for n in moved)
        else:
            assert any(n.startswith("fusion.") for n in moved)
