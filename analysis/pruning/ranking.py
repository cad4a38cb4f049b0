"""Which units a target keeps: ranking each axis, and the kept sets as masks. Small pure functions.

Shapes: L layers, H query heads, G key/value groups (H divisible by G), N units of one axis.
Ties are broken by the lower index everywhere (stable sorts), so pruning is deterministic and
figures outline exactly the units that pruning keeps.
"""

from __future__ import annotations

import torch


def top_sorted(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the ``n`` largest scores, returned in ascending index order. scores: [N] -> [n].

    A stable descending sort breaks ties by the lower index, so equal scores prune deterministically.
    """
    order = torch.sort(scores.float(), descending=True, stable=True).indices
    return order[:n].sort().values


def rank_channels(channels: torch.Tensor, n: int) -> torch.Tensor:
    """[D] network-wide channel scores -> [n] kept channels, ascending."""
    return top_sorted(channels, n)


def head_order(heads: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """[L, H] head scores -> [L, G, r] head indices of each GQA group, most important first.

    Query head h reads kv head h // (H // kv_heads) (HF ``repeat_kv``), so group g holds the
    consecutive heads g*r .. g*r+r-1. Stable sort: equal scores keep the lower index first.
    """
    L, H = heads.shape
    r = H // kv_heads
    grouped = heads.float().reshape(L, kv_heads, r)  # (L, G, r)
    order = torch.sort(grouped, dim=-1, descending=True, stable=True).indices
    return order + torch.arange(kv_heads).view(1, kv_heads, 1) * r


def rank_heads(heads: torch.Tensor, kv_heads: int, n: int) -> torch.Tensor:
    """[L, H] head scores -> [L, n] kept query heads per layer, ascending: each group keeps its n // G best."""
    L = heads.shape[0]
    return head_order(heads, kv_heads)[..., : n // kv_heads].sort(dim=-1).values.reshape(L, n)


def rank_neurons(neurons: torch.Tensor, n: int) -> torch.Tensor:
    """[L, F] neuron scores -> [L, n] kept neurons per layer, ascending."""
    return torch.stack([top_sorted(row, n) for row in neurons])


def rank_layers(depth: torch.Tensor, n: int) -> list[int]:
    """[L] layer scores (BI, or LM loss with the layer removed) -> the n kept layers, in order.

    Both metrics grow with importance: a high BI changes the residual stream a lot, a high drop
    loss hurts when removed, so the layers with the lowest scores are dropped.
    """
    return top_sorted(depth, n).tolist()


def cheapest_block(losses: torch.Tensor, layers: int, k: int) -> list[int]:
    """[L-k+1] held-out loss with layers s..s+k-1 removed -> the L-k layers kept when the cheapest block goes.

    The contiguous-block choice of the follow-up paper (arXiv:2408.11796, Llama-3.1-Minitron-4B-Depth):
    one block of k consecutive layers is removed, the one whose removal raises the loss least; ties go
    to the earlier block (argmin returns the first minimum).
    """
    if losses.shape != (layers - k + 1,):
        raise ValueError(f"{k}-layer block losses of a {layers}-layer model need {layers - k + 1} values, got {tuple(losses.shape)}")
    start = int(torch.argmin(losses.double()))
    return [i for i in range(layers) if not start <= i < start + k]


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
