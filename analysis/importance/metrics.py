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
