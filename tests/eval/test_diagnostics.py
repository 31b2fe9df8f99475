"""Attention diagnostics of one video (tam.eval.diagnostics) and their figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tam.config import ModelConfig
from tam.demo.worlds.power import PowerSpec, make_power_world
from tam.eval.diagnostics import attention_figures, video_attention
from tam.features.store import FeatureStore
from tam.models.model import build_model


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    make_power_world(root, PowerSpec(world="pretrain", n_train=2, n_test=1, min_segments=6, max_segments=8,
                                     dims={"image": 12, "audio": 10}, rank=4))
    return FeatureStore.open(root / "store")


@pytest.mark.parametrize("readout", ["f0", "attentive"])
def test_video_attention(store, readout):
    torch.manual_seed(0)
    model = build_model(ModelConfig(modalities=["image", "audio"], d=8, layers=2, heads=2, T=8, readout=readout),
                        store.manifest.dims, 5)
    video = store.videos()[0]
    att = video_attention(model, store, video, 8)
    n = store.read(video).T
    assert att.n_valid == n and att.maps.shape == (4, 2, n + 1, n + 1)  # 2 inner + 2 cross pairs, X_0 + segments
    assert att.pairs[:2] == [(0, 0), (1, 1)]
    assert np.allclose(att.maps[:, :, : n + 1].sum(-1), 1, atol=1e-5)
    assert att.f0_attention.shape == (n,) and 0 < att.f0_attention.sum() <= 1 + 1e-6
    if readout == "attentive":
        assert np.isclose(att.readout.sum(), 1, atol=1e-5)
    else:
        assert att.readout is None
    figs = attention_figures(att, "test", {"audio": [1]})
    assert all(png.startswith(b"\x89PNG") for png in figs.values())


def test_video_attention_refuses_a_baseline(store):
    model = build_model(ModelConfig(fusion="concat", modalities=["image", "audio"], d=8, layers=1, heads=2, T=8),
                        store.manifest.dims, 5)
    with pytest.raises(TypeError, match="CTM"):
        video_attention(model, store, store.videos()[0], 8)
