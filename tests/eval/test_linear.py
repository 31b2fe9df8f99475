"""The linear baseline: pooled normalised features, strength chosen on validation, scikit-learn models."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tam.datasets.labels import Labels
from tam.eval import linear
from tam.features.normalize import FeatureNorm, compute_stats
from tam.features.store import Encoder, FeatureStore, Manifest
from tam.memo import Memo


def test_pooled_features_are_mean_and_std_of_the_normalised_segments(tmp_path):
    store = FeatureStore.create(tmp_path / "s", Manifest(encoders={"a": Encoder("t", 2), "b": Encoder("t", 1)}))
    rng = np.random.default_rng(0)
    xa = rng.normal(5, 3, (6, 2)).astype(np.float32)
    store.write("v0", {"a": xa, "b": None}, np.zeros((6, 2)))
    store.write("v1", {"a": xa[:2] + 1, "b": np.ones((2, 1), np.float32)}, np.zeros((2, 2)))
    norm = FeatureNorm({"a": 2, "b": 1})
    norm.set_stats(compute_stats(store, ["v0", "v1"], ["a", "b"], "zscore"), "zscore", 0.0)
    X = linear.pooled_features(store, ["v0", "v1"], ["a", "b"], norm)
    mean, std = norm.mean_a.double().numpy(), norm.scale_a.double().numpy()
    z = (xa - mean) / std
    assert X.shape == (2, 6)
    assert np.allclose(X[0, :2], z.mean(0), atol=1e-5) and np.allclose(X[0, 2:4], z.std(0), atol=1e-5)
    assert np.all(X[0, 4:] == 0)  # absent modality: zeros
    assert linear.pooled_features(store, [], ["a", "b"], norm).shape == (0, 6)  # an empty split
    expected, X[:] = X.copy(), -1.0  # a caller's change never reaches the kept result
    reopened = FeatureStore.open(store.root)  # another run's store object on the same folder
    assert np.array_equal(linear.pooled_features(reopened, ["v0", "v1"], ["a", "b"], norm), expected)
    other = FeatureNorm({"a": 2, "b": 1})  # another normalisation: pooled again, not the kept array
    assert not np.allclose(linear.pooled_features(store, ["v0", "v1"], ["a", "b"], other)[0, :2], z.mean(0), atol=1e-3)


def test_ridge_strength_is_chosen_on_validation_per_target():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 20))
    w = np.zeros((20, 2))
    w[:3, 0], w[3:6, 1] = 1.0, 0.3
    y = X @ w + rng.normal(size=(300, 2)) * [0.5, 1.0]
    tr, va, te = slice(0, 150), slice(150, 220), slice(220, 300)
    r = linear.fit_regression(X[tr], y[tr], X[va], y[va], X[te], y[te])
    for j in range(2):
        pccs = [np.corrcoef(make_pipeline(StandardScaler(), Ridge(alpha=a)).fit(X[tr], y[tr, j]).predict(X[va]),
                            y[va, j])[0, 1] for a in linear.ALPHA_GRID]
        alpha = linear.ALPHA_GRID[int(np.argmax(pccs))]
        assert r["strength"][j] == alpha
        ref = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(X[tr], y[tr, j]).predict(X[te])
        assert r["test"][f"{('valence', 'arousal')[j]}_pcc"] == pytest.approx(np.corrcoef(ref, y[te, j])[0, 1])
    assert r["test"]["valence_pcc"] > 0.9 and r["test"]["arousal_pcc"] > 0.1
    assert r["name"].startswith("linear (ridge, alpha=")


def test_logistic_handles_classes_missing_from_training():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 5))
    y = (X[:, 0] > 0).astype(int)  # classes 0 and 1 only; the task has 3
    r = linear.fit_classification(X[:80], y[:80], X[80:100], y[80:100], X[100:], y[100:], num_classes=3)
    C = r["strength"]
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(X[:80], y[:80])
    assert r["test"]["accuracy"] == pytest.approx(np.mean(ref.predict(X[100:]) == y[100:]))
    assert r["test"]["accuracy"] > 0.8
    assert linear.fit_classification(X[:5], np.zeros(5, int), X[5:9], y[5:9], X[9:12], y[9:12], 2) == {}


@pytest.mark.parametrize("n, p", [(40, 300), (200, 12)])  # more pooled dims than training rows, and fewer
def test_logistic_in_the_training_rows_span_is_the_fit_on_all_columns(n, p):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, n + 60)
    X = rng.normal(size=(3, p))[y] * 0.3 + rng.normal(size=(n + 60, p))
    tr, va, te = slice(0, n), slice(n, n + 30), slice(n + 30, n + 60)
    Ztr, Zva, Zte = linear.row_span(X[tr], X[va], X[te])
    assert Ztr.shape == (n, min(n - 1, p)) and Zte.shape == (30, Ztr.shape[1])  # centred: rank n - 1 at most
    val_accuracy = []
    for C in linear.C_GRID:  # the fit on all p standardised columns, run to convergence
        full = make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=1e-10, max_iter=10000)).fit(X[tr], y[tr])
        span = linear._classifier(C).fit(Ztr, y[tr])
        for rows, Z in ((va, Zva), (te, Zte)):
            assert np.abs(span.predict_proba(Z) - full.predict_proba(X[rows])).max() < 1e-4, C
        val_accuracy.append(np.mean(full.predict(X[va]) == y[va]))
    r = linear.fit_classification(X[tr], y[tr], X[va], y[va], X[te], y[te], num_classes=3)
    C = linear.C_GRID[int(np.argmax(val_accuracy))]  # the first best: the stronger regularisation
    full = make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=1e-10, max_iter=10000)).fit(X[tr], y[tr])
    assert r["strength"] == C and r["test"]["accuracy"] == np.mean(full.predict(X[te]) == y[te])


def test_linear_baseline_on_labels_and_the_loses_to_flag(tmp_path):
    store = FeatureStore.create(tmp_path / "s", Manifest(encoders={"a": Encoder("t", 3)}))
    rng = np.random.default_rng(3)
    videos, targets = [], []
    for i in range(90):
        y = i % 2
        store.write(f"v{i}", {"a": (rng.normal(size=(4, 3)) + [2 * y, 0, 0]).astype(np.float32)}, np.zeros((4, 2)))
        videos.append(f"v{i}")
        targets.append(y)
    lab = Labels("classification", videos, np.array(targets), ["train"] * 50 + ["val"] * 20 + ["test"] * 20,
                 ["no", "yes"])
    r = linear.linear_baseline(store, ["a"], lab.subset("train"), lab.subset("val"), lab.subset("test"))
    assert r["test"]["accuracy"] > 0.9
    assert linear.loses_to("classification", {"accuracy": 0.5}, r["test"])
    assert not linear.loses_to("classification", {"accuracy": 1.0}, r["test"])
    assert not linear.loses_to("regression", {"valence_pcc": 0.1, "arousal_pcc": 0.1}, {})


def test_linear_baseline_is_fitted_once_per_split_and_process(tmp_path, monkeypatch):
    store = FeatureStore.create(tmp_path / "s", Manifest(encoders={"a": Encoder("t", 3)}))
    rng = np.random.default_rng(4)
    for i in range(40):
        store.write(f"v{i}", {"a": (rng.normal(size=(4, 3)) + [2 * (i % 2), 0, 0]).astype(np.float32)},
                    np.zeros((4, 2)))
    videos = [f"v{i}" for i in range(40)]
    lab = Labels("classification", videos, np.arange(40) % 2, ["train"] * 24 + ["val"] * 8 + ["test"] * 8,
                 ["no", "yes"])
    fits = []
    real = linear.fit_classification
    monkeypatch.setattr(linear, "fit_classification", lambda *a: fits.append(1) or real(*a))
    monkeypatch.setattr(linear, "_CACHE", Memo(16))
    parts = [lab.subset("train"), lab.subset("val"), lab.subset("test")]
    first = linear.linear_baseline(store, ["a"], *parts)
    first["test"]["accuracy"] = -1.0  # a caller's change never reaches the cache
    again = linear.linear_baseline(store, ["a"], *parts)
    assert len(fits) == 1 and again["test"]["accuracy"] >= 0
    other = Labels("classification", videos, 1 - np.arange(40) % 2, lab.split, ["no", "yes"])  # other targets
    linear.linear_baseline(store, ["a"], other.subset("train"), other.subset("val"), other.subset("test"))
    assert len(fits) == 2
