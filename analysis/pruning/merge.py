"""Head residual merging (arXiv:2407.14679 §2.3): pruned attention heads are folded into kept ones.

The paper: when L heads are pruned to K, "we add the residual info from the pruned heads back into the
remaining heads", kept head i becoming

    head_i + (head_i - head_{2K-i+1}),   i in [K - (L - K), K],

heads numbered 1..L by importance (1 the most important), and under grouped-query attention the
strategy is applied to the query heads only. Our reading, stated so it can be checked:

  * L and K count heads *within one GQA group* (we prune inside groups, every group keeping K of its
    L = H / G query heads), and "head_i" is the i-th most important head of the group, ranked by the
    same scores and tie-breaking as pruning (``ranking.head_order``);
  * the pairing mirrors around the cut: the weakest kept head (i = K) absorbs the strongest pruned one
    (K + 1), i = K - 1 absorbs K + 2, and so on. Taken literally the paper's interval starts one too
    low (i = K - (L - K) would pair with head_{L+1}, which does not exist), so i runs over
    [K - (L - K) + 1, K]: each of the L - K pruned heads is merged exactly once. When more than half
    the heads go (L - K > K), every kept head absorbs one and the weakest L - 2K pruned heads are
    dropped unmerged;
  * "head" means the head's query projection: the head_dim rows of q_proj (and of its bias, where
    there is one). Keys and values are shared by the whole group and kept; o_proj is only sliced.
    The arithmetic is on weights, elementwise, in the paper's form: W_q[i] <- W_q[i] + (W_q[i] - W_q[j]).

Shapes: H query heads, G groups, r = H / G heads per group, hd = head_dim, D hidden.
"""

from __future__ import annotations

import torch

RULE = ("arXiv:2407.14679 §2.3: kept head i <- head_i + (head_i - head_{2K-i+1}) for the i-th most important "
        "of the K kept heads, i in [K-(L-K)+1, K] (the paper's interval starts at K-(L-K), which would pair "
        "with a head L+1 that does not exist); L, K = heads per GQA group before and after")
WEIGHTS = ("query heads only: the head_dim rows of q_proj (and q bias) of each merged head; k/v (shared by "
           "the GQA group) and o_proj are sliced, not merged")


def merge_pairs(order: torch.Tensor, keep: int) -> torch.Tensor:
    """(kept, pruned) head pairs of every group from the importance order within each group.

    order: [G, r] teacher head indices of each group, most important first. Returns [G * P, 2] with
    P = min(K, r - K) pairs per group: (order[i-1], order[2K-i]) for i = K, K-1, ..., K-P+1 (1-based i).
    """
    r = order.shape[1]
    if not 0 < keep <= r:
        raise ValueError(f"cannot keep {keep} of {r} heads per group")
    i = torch.arange(keep, keep - min(keep, r - keep), -1)  # 1-based ranks of the kept heads that absorb one
    kept, pruned = order[:, i - 1], order[:, 2 * keep - i]  # (G, P) each
    return torch.stack([kept, pruned], dim=-1).reshape(-1, 2)


def merge_query_rows(weight: torch.Tensor, pairs: torch.Tensor, head_dim: int) -> torch.Tensor:
    """q_proj weight [H*hd, D] (or bias [H*hd]) with W[k] <- W[k] + (W[k] - W[p]) for every (k, p) pair.

    Returns a new tensor; the teacher's is left untouched. Kept heads are distinct across pairs, so
    the update is one vectorised assignment; it is computed in float32 at least, then cast back.
    """
    heads = weight.reshape(-1, head_dim, *weight.shape[1:])  # (H, hd[, D])
    merged = heads.clone()
    if len(pairs):
        kept, pruned = pairs[:, 0].to(weight.device), pairs[:, 1].to(weight.device)
        wide = heads.float() if heads.dtype.itemsize < 4 else heads
        merged[kept] = (wide[kept] + (wide[kept] - wide[pruned])).to(weight.dtype)
    return merged.reshape(weight.shape)


def describe(requested: bool, pairs: dict[int, torch.Tensor] | None, reason: str | None = None) -> dict:
    """The ``head_merge`` entry of prune_recipe.json: what was asked, what was done and how.

    ``pairs``: teacher layer -> [P, 2] (kept, pruned) teacher head indices; None or empty when nothing
    was merged, with ``reason`` saying why.
    """
    applied = bool(pairs) and any(len(p) for p in pairs.values())
    doc = {"enabled": requested, "applied": applied, "rule": RULE, "weights": WEIGHTS,
           "order": "heads ranked by importance within their GQA group (the scores and tie-breaking of pruning)"}
    if applied:
        doc["pairs"] = {str(layer): p.tolist() for layer, p in pairs.items()}  # teacher layer -> [[kept, pruned]]
    else:
        doc["reason"] = reason or ("--no-head-merge" if not requested else "no heads pruned")
    return doc
