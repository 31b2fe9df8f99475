"""Metrics against scikit-learn and scipy."""

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error
from sklearn.metrics import confusion_matrix as sk_confusion

from tam.eval.metrics import accuracy, confusion_matrix, macro_f1, mse, pcc, selection_score


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 5, 40), rng.integers(0, 5, 40)
    p[:3] = 6  # a class never in y_true
    assert accuracy(y, p) == pytest.approx(accuracy_score(y, p))
    assert macro_f1(y, p, 7) == pytest.approx(f1_score(y, p, average="macro"))
    np.testing.assert_array_equal(confusion_matrix(y, p, 7), sk_confusion(y, p, labels=range(7)))


@pytest.mark.parametrize("seed", range(5))
def test_regression_metrics_match_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert mse(a, b) == pytest.approx(mean_squared_error(a, b))
    assert pcc(a, b) == pytest.approx(pearsonr(a, b).statistic)


def test_pcc_of_a_constant_is_nan_and_selection_handles_it():
    assert np.isnan(pcc(np.arange(5.0), np.ones(5)))
    assert selection_score("regression", {"valence_pcc": float("nan"), "arousal_pcc": 0.5}) == 0.5
    assert selection_score("regression", {"valence_pcc": float("nan"), "arousal_pcc": float("nan")}) == -1.0
