"""Intervals over seeds against scipy, and the words a result may use."""

from __future__ import annotations

import math

import pytest

from analysis.experiments import stats

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [*range(1, 31), 40, 60, 120, 500])
def test_t_quantiles_match_scipy(df):
    assert stats.t975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=2e-3)


@pytest.mark.parametrize("values", [[7.51, 7.40, 7.66], [3.1, 3.3], [0.1, -0.2, 0.05, 0.3, -0.1]])
def test_interval_is_the_student_t_interval(values):
    iv = stats.interval(values)
    n = len(values)
    sem = scipy_stats.sem(values)  # sd with n - 1, over sqrt(n)
    lo, hi = scipy_stats.t.interval(0.95, n - 1, loc=sum(values) / n, scale=sem)
    assert (iv.mean, iv.lo, iv.hi, iv.n) == (pytest.approx(sum(values) / n), pytest.approx(lo, abs=1e-3 * sem),
                                             pytest.approx(hi, abs=1e-3 * sem), n)


def test_one_seed_has_no_interval_and_nan_is_refused():
    iv = stats.interval([2.0])
    assert (iv.mean, iv.lo, iv.hi) == (2.0, None, None) and not iv.excludes_zero
    with pytest.raises(ValueError):
        stats.interval([1.0, math.nan])
    with pytest.raises(ValueError):
        stats.interval([])


def test_paired_differences_cancel_what_both_share():
    a, b = [5.0, 7.0, 9.0], [4.9, 6.88, 8.9]  # wide apart across seeds, consistently lower within each
    assert stats.interval(a).lo < stats.interval(b).hi  # unpaired intervals overlap...
    d = stats.paired(a, b)
    assert d.excludes_zero and d.lo > 0  # ...the paired one does not
    assert stats.lower_or_not(d, "a", "b") == "b is lower than a"
    assert stats.lower_or_not(stats.paired([1.0, 2.0, 3.0], [1.1, 1.9, 3.05]), "a", "b") == \
        "no measurable difference between a and b"


def test_agreement_words_and_collapse():
    assert stats.agreement(stats.interval([0.6, 0.7, 0.8])) == "our order agrees with the paper's"
    assert stats.agreement(stats.interval([-0.6, -0.7, -0.8])) == "our order runs against the paper's"
    assert stats.agreement(stats.interval([0.5, -0.1, 0.3])).startswith("no measurable difference")
    assert stats.collapse_threshold(49152) == pytest.approx(10.8027, abs=1e-4)
    assert stats.collapsed([3.0, 10.9], 49152) and not stats.collapsed([3.0, 10.7], 49152)
    assert stats.fmt(stats.interval([1.0, 2.0, 3.0])) == "2.00 [-0.48, 4.48]"


def test_correlation_intervals_stay_within_minus_one_and_one():
    rhos = [0.9, 0.2, 0.7]
    iv, raw = stats.correlation_interval(rhos), stats.interval(rhos)
    assert raw.hi > 1 and (iv.mean, iv.lo, iv.hi) == (raw.mean, raw.lo, 1.0)
    assert iv.excludes_zero == raw.excludes_zero
