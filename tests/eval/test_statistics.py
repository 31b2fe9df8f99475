"""tam.eval.statistics against scipy on small arrays."""

import math

import numpy as np
import pytest
from scipy import stats

from tam.eval.statistics import compare, mean_ci, paired_difference_ci, paired_t_test, wilcoxon_signed_rank

RNG = np.random.default_rng(0)
A = RNG.normal(0.6, 0.05, 7)
B = A - RNG.normal(0.03, 0.02, 7)


def test_mean_ci_matches_scipy_t_interval():
    ci = mean_ci(A)
    low, high = stats.t.interval(0.95, len(A) - 1, loc=A.mean(), scale=stats.sem(A))
    assert ci.mean == pytest.approx(A.mean())
    assert (ci.low, ci.high) == pytest.approx((low, high))
    assert ci.n == 7


def test_mean_ci_degenerate():
    assert math.isnan(mean_ci([]).mean)
    one = mean_ci([0.3])
    assert one.mean == 0.3 and math.isnan(one.low)
    assert mean_ci([0.2, float("nan"), 0.4]).n == 2  # non-finite values (failed runs) are left out


def test_paired_difference_ci_is_interval_of_differences():
    ci = paired_difference_ci(A, B)
    d = A - B
    low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (ci.low, ci.high) == pytest.approx((low, high))


def test_paired_t_test_matches_scipy():
    t, p = paired_t_test(A, B)
    ref = stats.ttest_rel(A, B)
    assert t == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("n", [5, 8, 12])
def test_wilcoxon_exact_matches_scipy(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0, 1, n), rng.normal(0.4, 1, n)
    w, p = wilcoxon_signed_rank(a, b)
    ref = stats.wilcoxon(a, b, method="exact")
    assert w == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue)


def test_wilcoxon_ties_and_zeros_match_scipy_normal_approximation():
    a = np.array([0.50, 0.52, 0.55, 0.60, 0.61, 0.70, 0.40, 0.45])
    b = np.array([0.50, 0.50, 0.53, 0.58, 0.60, 0.65, 0.42, 0.40])  # one zero, tied |differences|
    w, p = wilcoxon_signed_rank(a, b)
    ref = stats.wilcoxon(a, b, zero_method="wilcox", method="approx", correction=False)
    assert w == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue)


def test_compare_pairs_on_shared_seeds_and_orders():
    a = {0: 0.9, 1: 0.85, 2: 0.88, 3: 0.91, 4: 0.87, 9: 0.1}
    b = {0: 0.5, 1: 0.52, 2: 0.49, 3: 0.55, 4: 0.51}
    c = compare(a, b)
    assert c.seeds == [0, 1, 2, 3, 4]  # seed 9 has no partner
    assert c.holds(">") and not c.holds("<")
    same = compare(b, {k: v + (0.01 if k % 2 else -0.01) for k, v in b.items()})  # no consistent difference
    assert not same.holds(">") and not same.holds("<")
