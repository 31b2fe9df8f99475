"""Feature normalisation: streamed training statistics, the FeatureNorm module, `tam store stats`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tam.cli import main
from tam.errors import TamError
from tam.features.normalize import FeatureNorm, Moments, compute_stats, describe_store, signed_log1p
from tam.features.store import Encoder, FeatureStore, Manifest, entry_name


def make_store(tmp_path, arrays: dict[str, dict[str, np.ndarray | None]]) -> FeatureStore:
    dims = {m: a.shape[1] for v in arrays.values() for m, a in v.items() if a is not None}
    store = FeatureStore.create(tmp_path / "store", Manifest(encoders={m: Encoder(f"t-{m}", D) for m, D in
                                                                        dims.items()}))
    for v, feats in arrays.items():
        T = next(a.shape[0] for a in feats.values() if a is not None)
        store.write(v, feats, np.stack([np.arange(T), np.arange(T) + 1.0], 1))
    return store


def heavy(rng, T: int) -> np.ndarray:
    """Columns: log-normal up to ~1e15, Gaussian, constant, a duplicate of column 1."""
    a = np.stack([np.exp(rng.normal(25, 4, T)), rng.normal(3, 2, T), np.full(T, 5.41), np.zeros(T)], 1)
    a[:, 3] = a[:, 1]
    return a.astype(np.float32)


def test_moments_merge_matches_numpy_on_heavy_tails():
    rng = np.random.default_rng(0)
    blocks = [heavy(rng, int(n)).astype(np.float64) for n in rng.integers(1, 30, 20)]
    mo = Moments.zeros(4)
    for b in blocks:
        mo.update(b)
    whole = np.concatenate(blocks)
    assert np.allclose(mo.mean, whole.mean(0), rtol=1e-12) and np.allclose(mo.std, whole.std(0), rtol=1e-9)
    assert whole.max() > 1e13  # the heavy column really is heavy
    nan_block = np.array([[np.nan, 1.0, 5.41, 1.0], [np.inf, 2.0, 5.41, 2.0]])
    mo.update(nan_block)  # non-finite values are left out, per dimension
    assert mo.n[0] == len(whole) and mo.n[1] == len(whole) + 2


def test_statistics_use_only_the_given_videos_and_skip_absent_modalities(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {f"v{i}": {"a": heavy(rng, 5 + i), "b": rng.normal(size=(5 + i, 3)).astype(np.float32)}
              for i in range(6)}
    arrays["v5"]["b"] = None  # absent: its zeros must not enter the statistics
    store = make_store(tmp_path, arrays)
    train = ["v0", "v1", "v2", "v5"]
    stats = compute_stats(store, train, ["a", "b"], "zscore")
    a = np.concatenate([arrays[v]["a"] for v in train]).astype(np.float64)
    b = np.concatenate([arrays[v]["b"] for v in train[:3]]).astype(np.float64)
    assert np.allclose(stats["a"][0], a.mean(0)) and np.allclose(stats["b"][0], b.mean(0))
    assert np.allclose(stats["b"][1], b.std(0))
    assert stats["a"][1][2] == 1.0  # the constant column gets scale 1
    logged = compute_stats(store, train, ["a"], "log1p")["a"]
    assert np.allclose(logged[0], signed_log1p(a).mean(0)) and np.allclose(logged[1][:2], signed_log1p(a).std(0)[:2])
    rows = compute_stats(store, ["v0", "v1"], ["a"], "zscore", rows=[slice(0, 2), slice(1, 3)])["a"]
    assert np.allclose(rows[0], np.concatenate([arrays["v0"]["a"][:2], arrays["v1"]["a"][1:3]]).mean(0))


def test_statistics_are_kept_per_process_until_an_entry_is_rewritten(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {f"v{i}": {"a": rng.normal(size=(4, 2)).astype(np.float32)} for i in range(3)}
    store = make_store(tmp_path, arrays)
    first = compute_stats(store, ["v0", "v1"], ["a"], "zscore")
    first["a"][0][:] = 99.0  # a caller's change never reaches the kept result
    reopened = FeatureStore.open(store.root)  # another run's store object on the same folder
    again = compute_stats(reopened, ["v0", "v1"], ["a"], "zscore")
    assert np.allclose(again["a"][0], np.concatenate([arrays["v0"]["a"], arrays["v1"]["a"]]).mean(0))
    assert not np.allclose(compute_stats(store, ["v0", "v2"], ["a"], "zscore")["a"][0], again["a"][0])  # other videos
    store.write("v1", {"a": arrays["v1"]["a"] + 10}, np.zeros((4, 2)), overwrite=True)
    rewritten = compute_stats(reopened, ["v0", "v1"], ["a"], "zscore")["a"][0]
    assert np.allclose(rewritten, np.concatenate([arrays["v0"]["a"], arrays["v1"]["a"] + 10]).mean(0))


def test_a_modality_without_a_finite_value_is_a_one_line_error(tmp_path):
    store = make_store(tmp_path, {"v0": {"a": np.ones((3, 2), np.float32), "b": np.ones((3, 2), np.float32)}})
    np.save(store.root / "videos" / entry_name("v0") / "b.npy", np.full((3, 2), np.nan, np.float32))  # damaged
    with pytest.raises(TamError, match="modality 'b'"):
        compute_stats(store, ["v0"], ["a", "b"], "zscore")


@pytest.mark.parametrize("mode", ["zscore", "log1p"])
def test_feature_norm_applies_the_statistics_clips_and_never_gives_nan(mode):
    rng = np.random.default_rng(2)
    x = heavy(rng, 50).astype(np.float64)
    f = signed_log1p(x) if mode == "log1p" else x
    mean, std = f.mean(0), np.where(f.std(0) > 1e-9, f.std(0), 1.0)
    norm = FeatureNorm({"a": 4})
    norm.set_stats({"a": (mean, std)}, mode, clip=3.0)
    xt = torch.tensor(x, dtype=torch.float32)[None]
    y = norm({"a": xt})["a"][0].double().numpy()
    assert np.allclose(y, np.clip((f - mean) / std, -3, 3), atol=1e-3)
    assert np.abs(y).max() <= 3.0 and np.all(y[:, 2] == 0)  # constant column -> 0
    bad = xt.clone()
    bad[0, 0, 0], bad[0, 1, 1] = float("nan"), float("inf")
    valid = torch.tensor([[True] * 49 + [False]])
    z = norm({"a": bad}, valid)["a"]
    assert torch.isfinite(z).all() and z[0, 0, 0] == 0 and z[0, 1, 1] == 0 and (z[0, -1] == 0).all()
    assert norm.mode == mode


def test_none_is_the_identity_and_an_old_checkpoint_loads_as_identity():
    norm = FeatureNorm({"a": 3})
    norm.set_stats({"a": (np.ones(3), np.full(3, 2.0))}, "none", clip=5.0)
    x = torch.randn(2, 4, 3) * 100
    assert torch.equal(norm({"a": x})["a"], x) and norm.mode == "none"
    model = torch.nn.Module()
    model.norm = FeatureNorm({"a": 3})
    model.norm.set_stats({"a": (np.ones(3), np.full(3, 2.0))}, "zscore", 0.0)
    model.load_state_dict({}, strict=True)  # a checkpoint written before normalisation existed
    assert model.norm.mode == "zscore"  # untouched (build_model starts from the identity)
    fresh = torch.nn.Module()
    fresh.norm = FeatureNorm({"a": 3})
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(fresh.norm.scale_a, torch.full((3,), 2.0))


def test_describe_store_flags_heavy_constant_and_duplicated_dimensions(tmp_path, capsys):
    rng = np.random.default_rng(3)
    store = make_store(tmp_path, {f"v{i}": {"a": heavy(rng, 40)} for i in range(10)})
    r = describe_store(store)["a"]
    assert r["rows"] == 400 and r["constant"] == [2] and r["duplicated"] == [(3, 1)]
    assert 0 in r["heavy"] and 1 not in r["heavy"]
    assert main(["store", "stats", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "heavy-tailed: 1 dims: 0" in out and "constant: 1 dims: 2" in out and "duplicated: 1 dims: 3=1" in out
    assert "data.normalize=log1p" in out
