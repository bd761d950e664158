"""runner.measure.stats on fixed inputs with known answers."""

import math
import warnings
from math import comb

import pytest

from runner.measure import stats


def test_cv_is_sample_stdev_over_mean():
    assert stats.cv([1, 2, 3, 4, 5]) == pytest.approx(1.5811388300841898 / 3)  # stdev ddof=1 = sqrt(2.5)
    assert stats.cv([2.0, 2.0, 2.0]) == 0.0
    assert stats.cv([7.0]) is None and stats.cv([]) is None


def test_summary_fields():
    s = stats.summary([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (s["n"], s["median"], s["mean"], s["min"], s["max"]) == (5, 3.0, 3.0, 1.0, 5.0)
    assert s["cv"] == pytest.approx(math.sqrt(2.5) / 3)
    assert s["ci_low"] <= s["median"] <= s["ci_high"]


def test_two_values_give_exactly_their_range():
    # Resampled medians of [a, b]: a, (a+b)/2, b with probability 1/4, 1/2, 1/4 -> the 2.5 % and
    # 97.5 % percentiles are a and b.
    s = stats.summary([7.1, 8.0])
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((7.1, 8.0), rel=1e-12)


def _exact_percentile_index(n: int, q: float) -> int:
    """k (1-based) of the order statistic at quantile q of the exact bootstrap distribution of the
    median of n distinct values, n odd: P(median* <= x_(k)) = P(Binomial(n, k/n) >= (n+1)/2)."""
    def cdf(k):
        p = k / n
        return sum(comb(n, j) * p**j * (1 - p) ** (n - j) for j in range((n + 1) // 2, n + 1))
    return next(k for k in range(1, n + 1) if cdf(k) >= q)


@pytest.mark.parametrize("n", [7, 11])
def test_odd_n_ci_is_the_exact_bootstrap_percentiles(n):
    values = [5.3 + 0.37 * ((i * 3) % n) for i in range(n)]  # distinct, unsorted
    ordered = sorted(values)
    lo, hi = _exact_percentile_index(n, 0.025), _exact_percentile_index(n, 0.975)
    assert (lo, hi) == {7: (2, 6), 11: (3, 9)}[n]  # the binomial's answer, for the reader
    s = stats.summary(values)
    # 9999 seeded resamples land on the exact order statistics here (checked; deterministic), up to the
    # last bit: scipy's quantile interpolates (1-g)*x + g*x between equal neighbours.
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((ordered[lo - 1], ordered[hi - 1]), rel=1e-12)


def test_ci_is_seeded_and_contains_the_median():
    values = [6.78, 7.11, 5.33, 7.58, 6.2, 6.9]
    a, b = stats.summary(values), stats.summary(list(values))
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])
    assert a["ci_low"] <= a["median"] <= a["ci_high"]
    other = stats.summary(values, seed=1)
    assert other["ci_low"] <= other["median"] <= other["ci_high"]


def test_one_value_has_no_ci_and_none_has_nothing():
    s = stats.summary([4.2])
    assert (s["n"], s["median"], s["ci_low"], s["ci_high"], s["cv"]) == (1, 4.2, None, None, None)
    empty = stats.summary([])
    assert empty["n"] == 0 and empty["median"] is None and empty["ci_low"] is None
    assert stats.summary([None, 3.0])["n"] == 1


def test_equal_values_give_a_point_ci_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = stats.summary([2.5, 2.5, 2.5])
        r = stats.ratio([2.0, 2.0], [4.0, 4.0])
    assert (s["ci_low"], s["ci_high"], s["cv"]) == (2.5, 2.5, 0.0)
    assert (r["ratio"], r["ci_low"], r["ci_high"]) == (0.5, 0.5, 0.5)


def test_ratio_of_identical_groups_is_one():
    r = stats.ratio([5.0, 6.0, 7.0], [5.0, 6.0, 7.0])
    assert r["ratio"] == 1.0 and r["ci_low"] <= 1.0 <= r["ci_high"]
    assert (r["n"], r["n_baseline"]) == (3, 3)


def test_ratio_of_known_medians():
    r = stats.ratio([12.0, 10.0, 11.0], [4.0, 5.0, 6.0, 5.0])  # medians 11 and 5
    assert r["ratio"] == pytest.approx(2.2)
    assert r["ci_low"] <= 2.2 <= r["ci_high"]
    # Independent resamples: the extreme ratios are min/max over the groups' resampled medians.
    assert 10.0 / 6.0 <= r["ci_low"] and r["ci_high"] <= 12.0 / 4.0
    assert stats.ratio([12.0, 10.0, 11.0], [4.0, 5.0, 6.0, 5.0]) == r  # seeded


def test_ratio_without_spread_on_one_side_has_no_ci():
    r = stats.ratio([3.0], [1.0, 2.0, 1.5])
    assert r["ratio"] == 2.0 and r["ci_low"] is None and r["ci_high"] is None
    assert stats.ratio([], [1.0])["ratio"] is None
