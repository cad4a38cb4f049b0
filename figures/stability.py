"""How stable the kept sets are under resampled calibration windows (``analyze --bootstrap``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from figures import style

AXES = ("channels", "neurons", "heads")
TARGETS = ("8B", "4B")
MARKERS = {"8B": "o", "4B": "s"}
LINES = {"8B": "--", "4B": "-"}


def _overlap_panel(b: dict, ax) -> None:
    """Jaccard of bootstrap kept sets with the full-sample one: mean and 95% interval, per axis and target."""
    ticks = []
    for i, axis in enumerate(AXES):
        kept = b["axes"].get(axis, {}).get("kept", {})
        parts = []
        for j, target in enumerate(TARGETS):
            entry = kept.get(target)
            if entry is None:
                continue
            jac = entry["jaccard"]
            parts.append(f"{target}: {entry['keep']}/{entry['of']}" + (" (all)" if jac is None else ""))
            if jac is None:  # every unit kept: nothing can move
                continue
            ax.errorbar(i + (j - 0.5) * 0.3, jac["mean"], yerr=[[jac["mean"] - jac["lo"]], [jac["hi"] - jac["mean"]]],
                        fmt=MARKERS[target], color=style.color(i), ms=7, capsize=4, lw=1.6)
        ticks.append(f"{axis}\n" + "\n".join(parts))
    ax.set_xticks(range(len(AXES)), ticks)
    ax.set_xlim(-0.6, len(AXES) - 0.4)
    ax.set_ylabel("Jaccard overlap with the full-sample kept set")
    ax.set_title(f"Kept sets over {b['iters']} bootstrap resamples of the {b['samples']} windows\n"
                 "(mean and 95% interval; below each axis: units kept / of)", fontsize=11)
    handles = [plt.Line2D([], [], color="0.3", marker=MARKERS[t], ls="none", label=f"{t} ratios") for t in TARGETS]
    ax.legend(handles=handles, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 1.0))


def _curve_panel(b: dict, ax) -> None:
    """Mean Jaccard (and 95% band) of kept sets from n random samples against the full-sample set."""
    for i, axis in enumerate(AXES):
        for target in TARGETS:
            points = b.get("curve", {}).get(axis, {}).get(target)
            if not points:
                continue
            n = np.array([p["n"] for p in points])
            mean = np.array([p["mean"] for p in points])
            ax.fill_between(n, [p["lo"] for p in points], [p["hi"] for p in points], color=style.color(i),
                            alpha=0.12, lw=0)
            ax.plot(n, mean, LINES[target], color=style.color(i), marker=MARKERS[target], ms=4, lw=1.8,
                    label=f"{axis}, {target}")
    ax.axhline(b["threshold"], color="0.4", lw=1, ls=":")
    ax.annotate(f"settled: {b['threshold']:.2f}", (0.01, b["threshold"]), xycoords=("axes fraction", "data"),
                ha="left", va="bottom", fontsize=8, color="0.4")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(f"calibration samples used (of {b['samples']})")
    ax.set_ylabel("Jaccard overlap with the full-sample kept set")
    ax.set_title("How many samples until the kept set stops moving", fontsize=11)
    ax.legend(loc="lower right", ncol=2, fontsize=8)


@style.house
def ranking_stability(run, axes=None) -> plt.Figure:
    """Two panels: bootstrap overlap of the kept sets at the 8B and 4B ratios, and overlap against sample count."""
    b = run.metrics["bootstrap"]
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8), layout="constrained")
    fig = axes[0].figure
    _overlap_panel(b, axes[0])
    _curve_panel(b, axes[1])
    fig.suptitle(f"How stable are the importance rankings? (batch L2 / sequence mean)\n{style.subtitle(run)}")
    return fig
