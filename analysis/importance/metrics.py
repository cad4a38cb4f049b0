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
