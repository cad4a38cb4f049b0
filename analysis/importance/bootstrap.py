"""How stable is a ranking? Resampling calibration windows, for the default aggregation (batch L2, seq mean).

The score of a unit (head, neuron, channel) is s = sqrt(Σ_b v_b²), v_b its sequence mean on sample b
(``collect`` keeps the (N, ...) rows v when asked). Reweighting the samples by counts c gives any
resample's score exactly, without another forward pass: s(c) = sqrt(Σ_b c_b v_b²), one matmul for all
replicates. Channels sum that over the 2L pre-norms, as the full score does.

Two questions, per axis, at the paper's 8B and 4B width ratios (``analysis.models.paper.width_targets``):
  1. bootstrap (N samples drawn with replacement, ``iters`` times): overlap of each replicate's kept set
     with the full-sample kept set (Jaccard |A ∩ B| / |A ∪ B|) and Spearman ρ of the scores (per layer for
     heads and neurons, averaged), as mean and 2.5-97.5th percentile;
  2. samples needed: subsets of n < N samples (without replacement) against the full set, for n = 1, 2,
     4, ..., N; ``stable_at`` is the smallest n whose mean Jaccard reaches ``STABLE``. That is relative to
     the full set, itself an N-sample estimate: read it with question 1's spread.
Kept sets are pruning's (``analysis.pruning.ranking``): channels top-k, neurons top-k per layer, heads
top-k within each key/value group per layer; ties to the lower index. Checked against it in the tests.
"""

from __future__ import annotations

import torch

from analysis.evaluation.intervals import bootstrap_counts
from analysis.importance.metrics import spearman_rows
from analysis.models.paper import MINITRON_TARGETS, width_targets

STABLE = 0.95  # mean Jaccard with the full-sample kept set at which the kept set counts as settled
TARGET_AXIS = {"channels": "hidden", "neurons": "mlp", "heads": "heads"}  # our axis -> width_targets key
METHOD = ("percentile bootstrap over calibration windows (multinomial resampling, default aggregation "
          "batch=L2 seq=mean recomputed exactly from per-window sequence means); kept sets as pruning ranks them")


def scores(rows: torch.Tensor, weights: torch.Tensor, axis: str) -> torch.Tensor:
    """Scores under sample weights. rows (N, ...) sequence means, weights (R, N) -> (R, ...) float64.

    channels: rows (N, L, 2, D) -> (R, D), the per-norm L2 scores summed over the 2L norms.
    """
    sq = rows.double().flatten(1).square()  # (N, C)
    out = (weights.double() @ sq).clamp_min(0).sqrt().view(weights.shape[0], *rows.shape[1:])
    return out.flatten(1, -2).sum(1) if axis == "channels" else out


def top_mask(s: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest along the last axis; ties to the lower index (a stable sort)."""
    order = torch.sort(s, dim=-1, descending=True, stable=True).indices[..., :k]
    return torch.zeros_like(s, dtype=torch.bool).scatter_(-1, order, True)


def kept(s: torch.Tensor, axis: str, k: int, kv_heads: int = 1) -> torch.Tensor:
    """Kept-unit mask of scores (R, ...) for ``k`` units per layer (heads: ``k`` per key/value group)."""
    if axis != "heads":
        return top_mask(s, k)
    R, L, H = s.shape
    grouped = s.reshape(R, L, kv_heads, H // kv_heads)
    return top_mask(grouped, k).reshape(R, L, H)


def keep_count(axis: str, ratio: float, size: int, kv_heads: int) -> int:
    """Units kept at a width ratio: of the layer (neurons), of the network (channels), per group (heads)."""
    per = size // kv_heads if axis == "heads" else size
    return min(per, max(1, round(ratio * per)))


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|A ∩ B| / |A ∪ B| of boolean masks over all but the first axis. (R, ...) -> (R,)."""
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double()
    return inter / union.clamp_min(1)


def _summary(x: torch.Tensor) -> dict:
    x = x.double()
    x = x[~x.isnan()]
    if x.numel() == 0:
        return {"mean": None, "lo": None, "hi": None}
    lo, hi = torch.quantile(x, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"mean": float(x.mean()), "lo": lo, "hi": hi}


def _rho(s: torch.Tensor, full: torch.Tensor, axis: str) -> torch.Tensor:
    """Spearman of each replicate's scores with the full-sample scores; per layer and averaged (heads, neurons)."""
    rho = spearman_rows(s, full.expand_as(s))
    return rho if axis == "channels" else rho.nanmean(dim=-1)


def subset_weights(n_total: int, n: int, iters: int, seed: int) -> torch.Tensor:
    """(iters, n_total) 0/1 weights, each row a random subset of ``n`` samples (without replacement)."""
    g = torch.Generator().manual_seed(seed)
    pick = torch.rand(iters, n_total, generator=g).argsort(dim=1)[:, :n]
    return torch.zeros(iters, n_total, dtype=torch.float64).scatter_(1, pick, 1.0)


def curve_sizes(n_total: int) -> list[int]:
    """1, 2, 4, ... below ``n_total``, then ``n_total``."""
    sizes, n = [], 1
    while n < n_total:
        sizes.append(n)
        n *= 2
    return sizes + [n_total]


def bootstrap(rows: dict[str, torch.Tensor], kv_heads: int, iters: int = 200, seed: int = 0) -> dict:
    """The ``bootstrap`` section of metrics.json from per-sample rows {heads, neurons, channels}."""
    n_total = next(iter(rows.values())).shape[0]
    if n_total < 2:
        raise ValueError("resampling needs at least two calibration samples")
    boot = bootstrap_counts(n_total, iters, seed)
    axes, curve, stable_at = {}, {}, {}
    for axis, v in rows.items():
        full = scores(v, torch.ones(1, n_total, dtype=torch.float64), axis)
        reps = scores(v, boot, axis)
        axes[axis] = {"unit": _unit(axis), "spearman": _summary(_rho(reps, full, axis)), "kept": {}}
        curve[axis], stable_at[axis] = {}, {}
        for target in MINITRON_TARGETS:
            ratios = width_targets()[target]
            size = full.shape[-1]
            k = keep_count(axis, ratios[TARGET_AXIS[axis]], size, kv_heads)
            per = size // kv_heads if axis == "heads" else size
            if k == per:  # everything kept (e.g. heads at the 8B ratio): nothing can move
                axes[axis]["kept"][target] = {"keep": k, "of": per, "jaccard": None, "note": "all units kept"}
                continue
            ref = kept(full, axis, k, kv_heads)
            axes[axis]["kept"][target] = {"keep": k, "of": per,
                                          "jaccard": _summary(jaccard(kept(reps, axis, k, kv_heads), ref))}
            curve[axis][target] = _curve(v, axis, k, kv_heads, ref, iters, seed)
            # reaching the threshold only at n = N says nothing (the full set against itself)
            stable_at[axis][target] = next((p["n"] for p in curve[axis][target][:-1] if p["mean"] >= STABLE), None)
    return {"iters": iters, "seed": seed, "samples": n_total, "aggregation": "l2_mean", "method": METHOD,
            "threshold": STABLE, "axes": axes, "curve": curve, "stable_at": stable_at}


def _curve(v: torch.Tensor, axis: str, k: int, kv_heads: int, ref: torch.Tensor, iters: int, seed: int) -> list[dict]:
    """Jaccard with the full-sample kept set ``ref`` of random n-sample subsets, for n in ``curve_sizes``."""
    n_total, points = v.shape[0], []
    for n in curve_sizes(n_total):
        w = subset_weights(n_total, n, iters if n < n_total else 1, seed + n)
        points.append({"n": n} | _summary(jaccard(kept(scores(v, w, axis), axis, k, kv_heads), ref)))
    return points


def _unit(axis: str) -> str:
    return {"channels": "channels of the network", "neurons": "neurons per layer",
            "heads": "query heads per key/value group"}[axis]
