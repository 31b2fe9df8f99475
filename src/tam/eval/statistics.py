"""Statistics for claims measured over seeds: mean with a t-based 95% interval, and paired tests between arms
that share seeds (paired t-test, Wilcoxon signed-rank, the interval of the paired difference).

Pure functions on 1-D arrays; scipy supplies only the t and normal distributions. Checked against
`scipy.stats.ttest_rel`, `scipy.stats.wilcoxon` and `scipy.stats.t.interval` in tests/eval/test_statistics.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _arr(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def mean_ci(x, confidence: float = 0.95) -> Interval:
    """Mean and its two-sided t interval (n - 1 degrees of freedom); nan bounds for fewer than 2 values."""
    a = _arr(x)
    n = len(a)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(a.mean())
    if n < 2:
        return Interval(m, math.nan, math.nan, 1)
    h = float(_st.t.ppf(0.5 + confidence / 2, n - 1) * a.std(ddof=1) / math.sqrt(n))
    return Interval(m, m - h, m + h, n)


def paired_difference_ci(a, b, confidence: float = 0.95) -> Interval:
    """Interval of mean(a - b) over pairs (a[i], b[i]) (the same seed in both arms)."""
    a, b = _pairs(a, b)
    return mean_ci(a - b, confidence)


def _pairs(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def paired_t_test(a, b) -> tuple[float, float]:
    """(t statistic, two-sided p) of the paired t-test of mean(a - b) = 0; nan when undefined."""
    a, b = _pairs(a, b)
    d = a - b
    n = len(d)
    if n < 2:
        return math.nan, math.nan
    sd = d.std(ddof=1)
    if sd == 0:
        return (math.copysign(math.inf, d.mean()), 0.0) if d.mean() != 0 else (math.nan, math.nan)
    t = float(d.mean() / (sd / math.sqrt(n)))
    return t, float(2 * _st.t.sf(abs(t), n - 1))


def _exact_signed_rank_counts(n: int) -> np.ndarray:
    """counts[w] = number of sign assignments of ranks 1..n whose positive-rank sum is w."""
    counts = np.zeros(n * (n + 1) // 2 + 1, dtype=np.float64)
    counts[0] = 1
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) with ties sharing the mean rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def wilcoxon_signed_rank(a, b) -> tuple[float, float]:
    """(W, two-sided p) of the Wilcoxon signed-rank test on a - b; W = min(W+, W-), zero differences dropped.

    Exact null distribution when there are no ties and at most 50 pairs (as scipy's default); otherwise
    the normal approximation with the tie correction (no continuity correction). nan with no non-zero pair.
    """
    a, b = _pairs(a, b)
    d = (a - b)[a != b]
    n = len(d)
    if n == 0:
        return math.nan, math.nan
    r = _ranks(np.abs(d))
    w_plus = float(r[d > 0].sum())
    w = min(w_plus, n * (n + 1) / 2 - w_plus)
    ties = len(np.unique(np.abs(d))) < n
    if not ties and n <= 50:
        counts = _exact_signed_rank_counts(n)
        p = 2 * counts[: int(w) + 1].sum() / counts.sum()
        return w, float(min(1.0, p))
    mn = n * (n + 1) / 4
    _, tcounts = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - (tcounts ** 3 - tcounts).sum() / 48
    z = (w - mn) / math.sqrt(var)
    return w, float(min(1.0, 2 * _st.norm.sf(abs(z))))


@dataclass(frozen=True)
class Comparison:
    """Arm a against arm b on the seeds they share."""

    seeds: list
    a: Interval
    b: Interval
    diff: Interval  # of a - b, paired
    t: float
    p_t: float
    w: float
    p_wilcoxon: float

    def holds(self, op: str) -> bool:
        """The claimed ordering a `op` b holds beyond the 95% interval of the paired difference."""
        if op == ">":
            return bool(self.diff.low > 0)
        if op == "<":
            return bool(self.diff.high < 0)
        raise ValueError(f"unknown ordering {op!r} (use > or <)")


def compare(a: dict, b: dict, confidence: float = 0.95) -> Comparison:
    """Compare {seed: value} of two arms on their shared seeds (paired)."""
    seeds = sorted(set(a) & set(b), key=str)
    x, y = np.array([a[s] for s in seeds], float), np.array([b[s] for s in seeds], float)
    t, pt = paired_t_test(x, y)
    w, pw = wilcoxon_signed_rank(x, y)
    return Comparison(seeds, mean_ci(x, confidence), mean_ci(y, confidence), paired_difference_ci(x, y, confidence),
                      t, pt, w, pw)
