"""Depth: how much each layer, and each contiguous block of layers, matters."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from analysis.importance.metrics import spearman
from figures import style


def _layer_panel(ax, values, title: str, ylabel: str, colour, baseline: float | None = None):
    x = np.arange(len(values))
    ax.bar(x, values, color=colour, width=0.8)
    if baseline is not None:
        ax.axhline(baseline, color="0.25", lw=1, ls="--", label=f"all layers: {baseline:.3f}")
        ax.legend(loc="upper center")
        lo, hi = min(min(values), baseline), max(values)
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.15 * (hi - lo + 1e-9))
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("layer index")
    ax.set_ylabel(ylabel)
    ax.set_xticks(x[:: max(1, len(x) // 16)])


@style.house
def layer_sensitivity(run, axes=None) -> plt.Figure:
    """Three panels per layer: eval loss with the layer dropped, Block Importance, angular distance.

    The suptitle gives the Spearman rank agreement of each cheap metric with the drop-one-layer loss.
    ``axes``: three Axes to draw into (default: a new 1x3 figure).
    """
    t = run.tensors
    drop, bi = t["drop_layer_loss"].numpy(), t["block_importance"].numpy()
    ang = t["angular.n1"].numpy() if "angular.n1" in t else None
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
    fig = axes[0].figure
    base = run.metrics.get("eval", {}).get("loss")
    _layer_panel(axes[0], drop, "drop one layer", "eval loss without the layer (nats/token)", style.color(0), base)
    _layer_panel(axes[1], bi, "Block Importance", "BI = 1 − cos(x_l, x_l+1)", style.color(1))
    rho_bi = spearman(t["block_importance"], t["drop_layer_loss"])
    text = f"Spearman ρ vs drop loss: BI {rho_bi:+.2f}"
    if ang is not None:
        _layer_panel(axes[2], ang, "angular distance (n=1)", "arccos(cos(x_l, x_l+1)) / π", style.color(2))
        text += f", angular {spearman(t['angular.n1'], t['drop_layer_loss']):+.2f}"
    else:
        axes[2].set_visible(False)
    fig.suptitle(f"Layer sensitivity: {style.subtitle(run)}\n{text}")
    return fig


@style.house
def block_drop_curves(run, ax=None):
    """Eval loss when a contiguous block of n layers starting at each position is removed, per n.

    Like Figure 8 of arXiv:2408.11796: the first and last layers tend to matter most.
    """
    _, ax = style.new_axes(ax)
    keys = sorted((k for k in run.tensors if k.startswith("drop_block_loss.n")), key=lambda k: int(k.split(".n")[1]))
    for i, key in enumerate(keys):
        n = int(key.split(".n")[1])
        loss = run.tensors[key].numpy()
        ax.plot(np.arange(len(loss)), loss, marker="o", ms=3.5, lw=1.8, color=style.color(i),
                label=f"{n} layer{'s' if n > 1 else ''}")
    base = run.metrics.get("eval", {}).get("loss")
    if base is not None:
        ax.axhline(base, color="0.25", lw=1, ls="--", label="no layer dropped")
    ax.set_xlabel("first dropped layer (index)")
    ax.set_ylabel("eval loss (nats/token)")
    ax.set_title(f"Dropping contiguous blocks of layers\n{style.subtitle(run)}")
    ax.legend(title="block size", loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax
