"""Pure metric functions: statistics in, scores out. Shapes in the docstrings."""

from __future__ import annotations

import torch


def block_importance(mean_cos: torch.Tensor) -> torch.Tensor:
    """BI_l = 1 - E_tokens[cos(x_l, x_{l+1})].  mean_cos (L,) -> (L,)."""
    return 1.0 - mean_cos


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (0-based, ties share their mean rank) of a 1-D tensor, float64."""
    x = x.double().flatten()
    order = torch.argsort(x, stable=True)
    r = torch.empty_like(x)
    r[order] = torch.arange(len(x), dtype=torch.float64)
    for v in torch.unique(x):  # ties: few in practice
        tie = x == v
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation = Pearson correlation of average ranks."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.square().sum() * rb.square().sum()).sqrt()
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


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
