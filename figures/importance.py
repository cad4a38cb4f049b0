"""Width: importance of attention heads, MLP neurons and embedding channels, and how aggregation matters."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.patches import Rectangle

from analysis.importance.metrics import spearman
from analysis.importance.results import AGGREGATIONS
from analysis.models.paper import MINITRON_TARGETS, width_targets
from analysis.pruning.ranking import heads_kept, kept_overlap
from figures import style

AGG_LABEL = {"mean": "mean", "l2": "L2", "var": "var"}


def _kv_heads(run) -> int:
    return int(run.metrics.get("architecture", {}).get("kv_heads") or 1)


@style.house
def head_heatmap(run, keep_per_group: int | None = None, ax=None):
    """Heatmap [layer x head] of head importance, outlining the heads a target keeps.

    The target keeps the top ``keep_per_group`` query heads of every GQA group in every layer
    (default: half of each group, as Minitron-4B keeps 24 of Nemotron-4 15B's 48 heads).
    """
    scores = run.tensors["heads"]  # (L, H)
    L, H = scores.shape
    groups = _kv_heads(run) if H % _kv_heads(run) == 0 else 1
    k = keep_per_group or max(1, H // groups // 2)
    _, ax = style.new_axes(ax, figsize=(min(12.0, max(6.0, 0.22 * H + 2.5)), min(8.0, max(3.5, 0.2 * L + 1.8))))
    lw = 1.4 if L * H <= 256 else 0.8  # thinner outlines once cells are small
    sns.heatmap(scores.numpy(), ax=ax, cmap=style.SEQUENTIAL, cbar_kws={"label": "head importance (L2 of head output)"},
                xticklabels=max(1, H // 16), yticklabels=max(1, L // 16))
    ax.grid(False)
    for layer, head in heads_kept(scores, groups, k).nonzero().tolist():
        ax.add_patch(Rectangle((head, layer), 1, 1, fill=False, edgecolor=style.color(1), lw=lw))
    for g in range(1, groups):  # group boundaries
        ax.axvline(g * H // groups, color="white", lw=2)
    ax.set_xlabel(f"query head (grouped by key/value head: {groups} groups of {H // groups})")
    ax.set_ylabel("layer index")
    ax.set_title(f"Attention head importance; outlined: kept at {k}/{H // groups} heads per group\n"
                 f"{style.subtitle(run)}")
    return ax


@style.house
def neuron_importance(run, ax=None):
    """Per-layer MLP neuron importance, each layer sorted descending, coloured by depth.

    Dashed lines mark the share of neurons the 8B and 4B targets keep (relative to the teacher).
    """
    scores = run.tensors["neurons"].numpy()  # (L, F)
    L, F = scores.shape
    _, ax = style.new_axes(ax)
    cmap = plt.get_cmap("viridis")
    x = np.arange(1, F + 1) / F
    for layer in range(L):
        ax.plot(x, np.sort(scores[layer])[::-1], color=cmap(layer / max(1, L - 1)), lw=1.2)
    _cut_lines(ax, "mlp", label="keeps")
    _scale(ax, scores)
    ax.set_xlabel(f"neuron rank / {F} (fraction of the MLP width)")
    ax.set_ylabel(f"neuron importance (aggregated activation{_log_note(scores)})")
    ax.set_title(f"MLP neuron importance, sorted within each layer\n{style.subtitle(run)}")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, L - 1))
    ax.figure.colorbar(sm, ax=ax, label="layer index", pad=0.01)
    ax.legend(loc="lower left")
    return ax


def _wide(values) -> bool:
    """Log scale only pays off when scores span more than ~20x."""
    pos = values[values > 0]
    return pos.size > 0 and float(pos.max() / pos.min()) > 20


def _scale(ax, values) -> None:
    if _wide(values):
        ax.set_yscale("log")


def _log_note(values) -> str:
    return ", log scale" if _wide(values) else ""


def _cut_lines(ax, axis: str, label: str, size: int | None = None):
    """Vertical lines at the kept fraction of the 8B and 4B targets (x in fraction, or in units if size)."""
    for i, name in enumerate(MINITRON_TARGETS):
        f = width_targets()[name][axis]
        x = f * size if size else f
        what = f"{round(f * size)} of {size}" if size else f"{f:.0%}"
        ax.axvline(x, color=style.color(3 + i), ls="--", lw=1.5, label=f"{name} target {label} {what}")


@style.house
def channel_importance(run, ax=None):
    """Network-wide embedding channel importance, sorted, with the 8B and 4B cut lines.

    The targets keep 4096 and 3072 of Nemotron-4 15B's 6144 channels; here scaled to the model's width.
    """
    scores = np.sort(run.tensors["channels"].numpy())[::-1]  # (D,)
    D = len(scores)
    _, ax = style.new_axes(ax)
    ax.fill_between(np.arange(D), scores, color=style.color(0), alpha=0.25, lw=0)
    ax.plot(np.arange(D), scores, color=style.color(0), lw=1.8, label="channel importance")
    _cut_lines(ax, "hidden", label="keeps", size=D)
    _scale(ax, scores)
    ax.set_xlim(0, D - 1)
    ax.set_xlabel(f"channel rank (of {D} embedding channels)")
    ax.set_ylabel(f"channel importance (summed over norms{_log_note(scores)})")
    ax.set_title(f"Embedding channel importance, sorted\n{style.subtitle(run)}")
    ax.legend(loc="upper right")
    return ax


def aggregation_keys(run, axis: str = "channels") -> list[str]:
    """The batch_seq aggregations present for ``axis``, in (batch, seq) order."""
    return [f"{b}_{s}" for b in AGGREGATIONS for s in AGGREGATIONS if f"{axis}.{b}_{s}" in run.tensors]


def aggregation_matrices(run, axis: str = "channels", keep: float | None = None):
    """(labels, Spearman matrix, overlap matrix, k) of the rankings given by each aggregation.

    Overlap: share of the top-k kept set two aggregations have in common, k = ``keep`` x N
    (default: the 8B target's share of embedding channels, 2/3).
    """
    keys = aggregation_keys(run, axis)
    vecs = [run.tensors[f"{axis}.{k}"].flatten() for k in keys]
    n = len(vecs[0]) if vecs else 0
    k = max(1, round((keep or width_targets()["8B"]["hidden"]) * n))
    rho = np.array([[spearman(a, b) for b in vecs] for a in vecs])
    overlap = np.array([[kept_overlap(a, b, k) for b in vecs] for a in vecs])
    labels = ["/".join(AGG_LABEL[p] for p in key.split("_")) for key in keys]
    return labels, rho, overlap, k


@style.house
def aggregation_comparison(run, axis: str = "channels", keep: float | None = None, axes=None) -> plt.Figure:
    """Two heatmaps over the nine batch/sequence aggregations: rank correlation and kept-set overlap."""
    labels, rho, overlap, k = aggregation_matrices(run, axis, keep)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.4), layout="constrained")
    fig = axes[0].figure
    n = len(run.tensors[axis].flatten())
    panels = ((rho, "Spearman rank correlation", axes[0]), (overlap, f"overlap of the kept sets (top {k} of {n})", axes[1]))
    keys, off = aggregation_keys(run, axis), ~np.eye(len(labels), dtype=bool)
    for (mat, title, ax), unit in zip(panels, ("Spearman ρ", "overlap (share of kept set)")):
        # the diagonal is 1 by definition: mask it so the colours spread over the comparisons that differ
        low = np.floor(float(np.nanmin(mat[off])) * 20) / 20 if off.any() else 0.0
        sns.heatmap(mat, ax=ax, mask=~off, vmin=low, vmax=1, cmap=style.SEQUENTIAL, annot=True,
                    fmt=".2f", annot_kws={"size": 8}, square=True, xticklabels=labels, yticklabels=labels,
                    cbar_kws={"label": unit, "shrink": 0.8})
        ax.grid(False)
        if "l2_mean" in keys:  # the paper's choice against every other
            ax.add_patch(Rectangle((0, keys.index("l2_mean")), len(keys), 1, fill=False, edgecolor=style.color(1),
                                   lw=2.5, clip_on=False))
        ax.set_xlabel("aggregation (batch / sequence)")
        ax.set_ylabel("aggregation (batch / sequence)")
        ax.set_title(title, fontsize=11)
    fig.suptitle(f"How the aggregation choice ranks {axis} (outlined row: the paper's L2/mean)\n{style.subtitle(run)}")
    return fig
