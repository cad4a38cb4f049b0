"""95% intervals for means and paired differences, by the percentile bootstrap over independent units.

A unit is what was sampled independently: a document of a task, or a held-out window (its tokens are
not independent of each other). Every statistic here is a ratio of sums over units,

    stat = Σ_i num_i / Σ_i den_i        (den_i = 1: a mean over documents; tokens per window: a token mean)

and one bootstrap replicate reweights the units by multinomial counts c (resampling them with
replacement): stat* = Σ c_i num_i / Σ c_i den_i. The interval is the 2.5th and 97.5th percentile of
``iters`` replicates (seeded). A paired difference (the same units under two models) uses
num_i = num_b,i - num_a,i, so unit-to-unit variation common to both cancels. A direction is claimed
only when the interval excludes zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

ITERS = 2000


@dataclass(frozen=True)
class Interval:
    """A statistic with its 95% bootstrap interval over ``n`` units."""

    value: float
    lo: float
    hi: float
    n: int  # independent units resampled
    iters: int  # bootstrap replicates

    @property
    def direction(self) -> str:
        """'up' or 'down' when the interval excludes zero, else 'none' (no direction claimed)."""
        return "up" if self.lo > 0 else "down" if self.hi < 0 else "none"

    def to_json(self) -> dict:
        return asdict(self) | {"direction": self.direction}


def bootstrap_counts(n: int, iters: int = ITERS, seed: int = 0) -> torch.Tensor:
    """(iters, n) float64 multinomial counts: each row resamples n units with replacement."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (iters, n), generator=g)
    return torch.zeros(iters, n, dtype=torch.float64).scatter_add_(1, idx, torch.ones(iters, n, dtype=torch.float64))


def ratio_interval(num, den=None, iters: int = ITERS, seed: int = 0) -> Interval:
    """Σ num / Σ den over units (den None: 1 per unit) with its percentile bootstrap interval. num, den: (n,)."""
    num = torch.as_tensor(num, dtype=torch.float64).flatten()
    den = torch.ones_like(num) if den is None else torch.as_tensor(den, dtype=torch.float64).flatten()
    if num.numel() == 0 or float(den.sum()) <= 0:
        raise ValueError("an interval needs at least one unit with a positive count")
    c = bootstrap_counts(num.numel(), iters, seed)
    reps = (c @ num) / (c @ den).clamp_min(1e-300)
    lo, hi = torch.quantile(reps, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return Interval(float(num.sum() / den.sum()), lo, hi, num.numel(), iters)


def paired_difference(a, b, den=None, iters: int = ITERS, seed: int = 0) -> Interval:
    """(Σ b − Σ a) / Σ den over the same units: b minus a, paired. a, b, den: (n,) per-unit sums (or values)."""
    a = torch.as_tensor(a, dtype=torch.float64).flatten()
    b = torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same units: {a.numel()} vs {b.numel()}")
    return ratio_interval(b - a, den, iters, seed)
