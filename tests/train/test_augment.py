"""Clip augmentation (token / modality dropout, mixup, crop length) and the loss with smoothing and mixup."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tam.features.clips import ClipDataset, collate, crop_start, crop_window
from tam.features.store import FeatureStore
from tam.train.augment import Augment, loss_sum


@pytest.fixture
def ds(tiny_world):
    store, labels = tiny_world
    st = FeatureStore.open(store)
    videos = st.videos()[:20]
    return ClipDataset(st, videos, np.arange(20) % 8, ["image", "motion", "audio"], T=8, seed=3)


def test_crop_window_lengths_and_paper_crop():
    for i in range(50):
        assert crop_window(30, 8, 0, 1, i) == (crop_start(30, 8, 0, 1, i), 8)  # min_fraction 1: the paper's crop
        s, n = crop_window(30, 8, 0, 1, i, 0.5)
        assert 4 <= n <= 8 and 0 <= s <= 30 - n
        assert crop_window(30, 8, 0, 1, i, 0.5) == (s, n)  # reproducible
    assert {crop_window(30, 8, 0, 1, i, 0.5)[1] for i in range(50)} == set(range(4, 9))
    assert crop_window(3, 8, 0, 0, 0, 0.5)[1] <= 3


def test_token_and_modality_dropout(ds):
    aug = Augment(token_dropout=0.5, modality_dropout=1.0, seed=3)
    for i in range(len(ds)):
        x, present, _, _, ex = aug(ds, ds[(i, 0)], 0)
        assert ex["valid"].any() and ex["valid"].dtype == torch.bool  # at least one segment stays
        assert present.sum() == 2  # p = 1: exactly one modality goes, never all
        gone = list(x)[int((~present).nonzero()[0])]
        assert not x[gone].any()  # like a video without that track
        y = aug(ds, ds[(i, 0)], 0)
        assert torch.equal(y[4]["valid"], ex["valid"]) and torch.equal(y[1], present)  # reproducible
    b = collate([aug(ds, ds[(i, 0)], 0) for i in range(4)], pad_to=8)
    assert b.valid.shape == (4, 8) and b.seed.shape == (4,) and b.lam is None
    single = Augment(modality_dropout=1.0)  # a clip with one present modality keeps it
    x, present, t, i, ex = ds[(0, 0)]
    present1 = torch.tensor([True, False, False])
    assert single(ds, (x, present1, t, i, ex), 0)[1].tolist() == [True, False, False]


def test_mixup_mixes_features_and_carries_the_partner(ds):
    aug = Augment(mixup_alpha=0.4, seed=0)
    x, present, t, i, ex = ds[(5, 2)]
    mx, mp, _, _, mex = aug(ds, ds[(5, 2)], 2)
    lam = mex["lam"]
    assert 0.5 <= lam <= 1 and int(mex["target_b"]) in range(8)
    partner = ((mx["image"] - lam * x["image"]) / (1 - lam))
    assert not torch.allclose(partner, x["image"])  # another video
    b = collate([aug(ds, ds[(k, 2)], 2) for k in range(3)], pad_to=8)
    assert b.lam.shape == (3,) and b.target_b.shape == (3,)


def test_loss_with_smoothing_and_mixup_is_cross_entropy_against_soft_targets():
    g = torch.Generator().manual_seed(0)
    out, a, b = torch.randn(6, 5, generator=g), torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 1, 0, 4, 2, 3])
    lam = torch.rand(6, generator=g) * 0.5 + 0.5
    eps = 0.1
    soft = lam[:, None] * F.one_hot(a, 5) + (1 - lam[:, None]) * F.one_hot(b, 5)
    soft = (1 - eps) * soft + eps / 5
    want = -(soft * out.log_softmax(-1)).sum()
    got = loss_sum("classification", out, a, [], [], eps, b, lam)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    assert loss_sum("classification", out, a, [], [], 0.0).item() == pytest.approx(
        F.cross_entropy(out, a, reduction="sum").item(), rel=1e-6)


def test_regression_mixup_mixes_targets():
    out = torch.zeros(3, 2)
    ta, tb, lam = torch.tensor([[1.0, 2.0]] * 3), torch.tensor([[3.0, 0.0]] * 3), torch.tensor([0.5, 0.75, 1.0])
    mixed = lam[:, None] * ta + (1 - lam[:, None]) * tb
    got = loss_sum("regression", out, ta, [0.0, 0.0], [1.0, 1.0], 0.0, tb, lam)
    assert got.item() == pytest.approx((mixed ** 2).sum().item() / 2)


def test_shift_moves_a_short_clip_within_the_window_and_keeps_its_segments(ds):
    """augment.shift: a clip of n < T segments starts at slot s in [0, T - n]: s padded slots first (valid False),
    then the clip unchanged (every offset within it kept); reproducible; a clip of T segments is never moved."""
    aug = Augment(shift=True, seed=3)
    moved = set()
    for i in range(len(ds)):
        x, _, _, _, _ = item = ds[(i, 0)]
        n = x["image"].shape[0]
        sx, _, _, _, ex = aug(ds, item, 0)
        if n == ds.T:
            assert "valid" not in ex and torch.equal(sx["image"], x["image"])
            continue
        s = sx["image"].shape[0] - n
        assert 0 <= s <= ds.T - n and ex["valid"].tolist() == [False] * s + [True] * n
        assert torch.equal(sx["audio"][s:], x["audio"]) and not sx["audio"][:s].any()
        assert torch.equal(aug(ds, item, 0)[0]["image"], sx["image"])  # a function of (seed, epoch, video)
        moved.add(s)
    assert len(moved) > 1  # the slot varies between videos
    b = collate([aug(ds, ds[(i, 0)], 0) for i in range(4)], pad_to=ds.T)
    assert b.valid.shape == (4, ds.T)
