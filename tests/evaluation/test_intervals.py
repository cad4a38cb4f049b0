"""Bootstrap intervals against an explicit resampling loop with the same draws."""

import pytest
import torch

from analysis.evaluation.intervals import Interval, bootstrap_counts, paired_difference, ratio_interval


def test_ratio_interval_equals_an_explicit_resampling_loop():
    g = torch.Generator().manual_seed(0)
    num, den = torch.rand(12, generator=g) * 10, torch.randint(1, 9, (12,), generator=g).double()
    got = ratio_interval(num, den, iters=300, seed=4)
    idx = torch.randint(0, 12, (300, 12), generator=torch.Generator().manual_seed(4))  # the same draws
    reps = torch.tensor([float(num[i].double().sum() / den[i].sum()) for i in idx], dtype=torch.float64)
    assert got.value == pytest.approx(float(num.double().sum() / den.sum()), rel=1e-12)
    assert (got.lo, got.hi) == pytest.approx(tuple(torch.quantile(reps, torch.tensor([0.025, 0.975],
                                                                                      dtype=torch.float64)).tolist()))
    assert bootstrap_counts(12, 300, 4).sum(1).eq(12).all()


def test_paired_difference_and_direction():
    a = torch.tensor([0.0, 1, 0, 1, 1, 0, 1, 0] * 5)
    assert paired_difference(a, a + 1).direction == "up" and paired_difference(a, a + 1).value == pytest.approx(1.0)
    assert paired_difference(a + 1, a).direction == "down"
    noise = torch.tensor([1.0, -1.0] * 20)
    assert paired_difference(a, a + noise).direction == "none"  # mean 0, interval spans zero
    assert Interval(0.1, -0.2, 0.3, 5, 10).to_json()["direction"] == "none"
    with pytest.raises(ValueError):
        paired_difference(a, a[:3])
