"""Which units a width target keeps, and how two rankings agree: small pure functions.

Shapes: L layers, H query heads, G key/value groups (H divisible by G), N units of one axis.
"""

from __future__ import annotations

import torch

from analysis.importance.metrics import ranks, spearman  # noqa: F401 - re-exported for figures
from analysis.pruning.plan import rank_heads, top_sorted


def heads_kept(scores: torch.Tensor, kv_heads: int, keep_per_group: int) -> torch.Tensor:
    """Boolean mask [L, H] of the heads kept when every GQA group keeps its top ``keep_per_group``.

    Query heads are pruned within their key/value group (heads g*H/G .. (g+1)*H/G - 1 share group g),
    and every layer keeps the same number, as Minitron does.
    """
    layers, heads = scores.shape  # (L, H)
    per_group = heads // kv_heads
    if heads % kv_heads or not 0 < keep_per_group <= per_group:
        raise ValueError(f"cannot keep {keep_per_group} of {per_group} heads per group ({heads} heads, {kv_heads} groups)")
    kept = rank_heads(scores, kv_heads, keep_per_group * kv_heads)  # (L, kept): pruning's own choice
    return torch.zeros(layers, heads, dtype=torch.bool).scatter_(1, kept, True)


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of a 1-D score vector [N]."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[top_sorted(scores, k)] = True  # the same tie-breaking as pruning
    return mask


def kept_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Share of the top-``k`` set of ``a`` that is also in the top-``k`` set of ``b`` (0..1)."""
    return float((topk_mask(a, k) & topk_mask(b, k)).sum()) / k
