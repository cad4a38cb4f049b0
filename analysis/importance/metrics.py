"""Pure metric functions: statistics in, scores out. Shapes in the docstrings."""

from __future__ import annotations

import torch


def block_importance(mean_cos: torch.Tensor) -> torch.Tensor:
    """BI_l = 1 - E_tokens[cos(x_l, x_{l+1})].  mean_cos (L,) -> (L,)."""
    return 1.0 - mean_cos


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (0-based, ties share their mean rank) along the last axis, float64. (..., N) -> (..., N).

    Sorted values split into runs of equal values; every member of a run gets (first + last) / 2 of
    the run's sorted positions. Vectorised over leading axes (bootstrap replicates, layers).
    """
    x = x.double()
    n = x.shape[-1]
    values, order = torch.sort(x, dim=-1, stable=True)
    pos = torch.arange(n, dtype=torch.float64).expand_as(values)
    new_run = torch.ones_like(values, dtype=torch.bool)
    new_run[..., 1:] = values[..., 1:] != values[..., :-1]
    first = torch.where(new_run, pos, torch.zeros_like(pos)).cummax(dim=-1).values  # start of each run
    ends = torch.ones_like(new_run)
    ends[..., :-1] = new_run[..., 1:]
    last = torch.where(ends, pos, torch.full_like(pos, n)).flip(-1).cummin(dim=-1).values.flip(-1)  # its end
    return torch.empty_like(pos).scatter_(-1, order, (first + last) / 2)


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (0-based, ties share their mean rank) of a 1-D tensor, float64."""
    return average_ranks(x.flatten())


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation along the last axis (Pearson of average ranks); NaN where a side is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    denom = (ra.square().sum(-1) * rb.square().sum(-1)).sqrt()
    return torch.where(denom > 0, (ra * rb).sum(-1) / denom.clamp_min(1e-300), torch.full_like(denom, float("nan")))


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation = Pearson correlation of average ranks."""
    return float(spearman_rows(a.flatten(), b.flatten()))


def kendall(a: torch.Tensor, b: torch.Tensor) -> float:
    """Kendall's tau-b over all pairs i < j (ties in either variable handled as tau-b does).

        tau_b = (C - D) / sqrt((n0 - t_a) (n0 - t_b)),  n0 = n(n-1)/2,
    C/D = concordant/discordant pairs, t_a/t_b = pairs tied in a/b. O(n^2): meant for tens of items.
    """
    a, b = a.double().flatten(), b.double().flatten()
    da = torch.sign(a.view(-1, 1) - a.view(1, -1)).triu(1)  # (n, n): sign of a_i - a_j for i < j
    db = torch.sign(b.view(-1, 1) - b.view(1, -1)).triu(1)
    n = len(a)
    n0 = n * (n - 1) / 2
    tied_a = n0 - float((da != 0).sum())
    tied_b = n0 - float((db != 0).sum())
    denom = ((n0 - tied_a) * (n0 - tied_b)) ** 0.5
    return float((da * db).sum()) / denom if denom > 0 else float("nan")


def bootstrap_interval(statistic, n: int, resamples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(idx)`` over ``n`` items resampled with replacement.

    ``statistic`` takes a LongTensor of n indices (a resample) and returns a float; resamples where it is
    undefined (NaN, e.g. a correlation of a constant resample) are left out.
    """
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([statistic(torch.randint(0, n, (n,), generator=g)) for _ in range(resamples)],
                          dtype=torch.float64)
    values = values[~values.isnan()]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    return float(torch.quantile(values, tail)), float(torch.quantile(values, 1 - tail))
