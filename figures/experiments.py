"""Figures of the experiments in ``analysis.experiments.studies``: their result dicts in, matplotlib figures out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from analysis.models.paper import PRUNING_METHODS
from analysis.models.registry import PAPER, PAPER_V2
from figures import style

_AGG_NAMES = {"mean": "mean |x|", "l2": "L2", "var": "variance"}


def _grid(rows: list[dict], key: str) -> np.ndarray:
    """3 x 3 array of ``key`` (batch aggregation down, sequence aggregation across)."""
    order = list(_AGG_NAMES)
    grid = np.full((3, 3), np.nan)
    for r in rows:
        grid[order.index(r["batch"]), order.index(r["seq"])] = r[key]
    return grid


def _heatmap(ax, grid: np.ndarray, title: str) -> None:
    im = ax.imshow(grid, cmap=style.SEQUENTIAL)
    best = np.unravel_index(np.nanargmin(grid), grid.shape)
    for (i, j), v in np.ndenumerate(grid):
        weight = "bold" if (i, j) == best else "normal"
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=10, weight=weight,
                color="white" if v > np.nanmean(grid) else "black")
    labels = list(_AGG_NAMES.values())
    ax.set_xticks(range(3), labels)
    ax.set_yticks(range(3), labels)
    ax.set_xlabel("sequence aggregation (first)")
    ax.set_ylabel("batch aggregation (then)")
    ax.set_title(title, fontsize=11)
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="zero-shot LM loss")


@style.house
def aggregation_study(result: dict, axes=None) -> plt.Figure:
    """Zero-shot loss per batch x sequence aggregation: ours beside the paper's (Table 11); best in bold."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    fig = axes[0].figure
    t = result["target"]
    _heatmap(axes[0], _grid(result["rows"], "loss"),
             f"this run: pruned to hidden {t['hidden']}, MLP {t['ffn']}, heads {t['heads']}\n"
             f"(unpruned loss {result['teacher_loss']:.2f})")
    _heatmap(axes[1], _grid(result["rows"], "paper_loss_8t"), f"{PAPER_V2} Table 11: Nemotron-4 15B -> 8B shape\n(8T blend)")
    fig.suptitle(f"Aggregation of importance scores: Spearman rho vs paper {result['spearman_vs_paper']:+.2f}")
    return fig


@style.house
def pruning_axes(result: dict, ax=None):
    """Zero-shot and after-distillation loss per pruning axis, parameter counts under each bar."""
    fig, ax = style.new_axes(ax, figsize=(12, 5))
    rows = result["rows"]
    x = np.arange(len(rows))
    trained = all("distilled_loss" in r for r in rows)
    series = {"zero-shot": [r["zero_shot_loss"] for r in rows]}
    if trained:
        steps = (result.get("train") or {}).get("steps", "?")
        series[f"after {steps} distillation steps"] = [r["distilled_loss"] for r in rows]
    width = 0.8 / len(series)
    for i, (label, vals) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=label, color=style.color(i))
        ax.bar_label(bars, fmt="%.2f", fontsize=7.5, padding=1)
    ax.axhline(result["teacher_loss"], color="0.25", lw=1, ls="--", label=f"unpruned: {result['teacher_loss']:.2f}")
    names = [r["variant"].replace(" (", "\n(").replace("+", "+\n") for r in rows]  # narrow labels
    ax.set_xticks(x, [f"{n}\n{r['params'] / 1e6:.1f}M" for n, r in zip(names, rows)], fontsize=8)
    ax.set_ylabel("held-out LM loss (nats/token)")
    ax.set_title(f"Pruning axes at matched size (~{result['fraction']:.0%} of "
                 f"{result['teacher_params'] / 1e6:.0f}M parameters removed)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


@style.house
def distill_vs_finetune(result: dict, axes=None) -> plt.Figure:
    """Held-out loss and KL to the teacher over training, distillation vs plain fine-tuning."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    fig = axes[0].figure
    for i, (mode, evals) in enumerate(result["curves"].items()):
        steps = [e["step"] for e in evals]
        axes[0].plot(steps, [e["loss"] for e in evals], marker="o", color=style.color(i), label=mode)
        axes[1].plot(steps, [e["kl"] for e in evals], marker="o", color=style.color(i), label=mode)
    axes[0].axhline(result["teacher_loss"], color="0.25", lw=1, ls="--", label="teacher")
    axes[0].set_ylabel("held-out LM loss (nats/token)")
    axes[1].set_ylabel("KL(teacher || student) (nats/token)")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.legend()
    fig.suptitle(f"Healing a pruned student ({result['params'] / 1e6:.1f}M): distillation vs fine-tuning")
    return fig


@style.house
def layer_drop_curves(result: dict, ax=None):
    """Loss increase when n contiguous layers are dropped, by first dropped layer (arXiv:2408.11796 Fig. 8)."""
    fig, ax = style.new_axes(ax)
    key = "delta" if result["baseline"] is not None else "loss"
    for i, n in enumerate(result["sizes"]):
        pts = [r for r in result["rows"] if r["n"] == n]
        ax.plot([r["start"] for r in pts], [r[key] for r in pts], marker="o", ms=3.5, color=style.color(i),
                label=f"{n} layer{'s' if n > 1 else ''}")
    ax.set_yscale("symlog", linthresh=0.1)  # one-layer drops are ~0.1 nats, 16-layer drops several nats
    ax.set_xlabel("first dropped layer (index)")
    ax.set_ylabel("loss increase over the full model" if key == "delta" else "held-out loss")
    ax.set_title(f"Dropping contiguous layers: {result['model']}")
    ax.legend(title="block size", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


@style.house
def pruning_methods(ax=None):
    """MMLU and HellaSwag of 8B-class models pruned by other methods vs Minitron 8B (paper data)."""
    fig, ax = style.new_axes(ax, figsize=(8, 4))
    names = list(PRUNING_METHODS)
    x = np.arange(len(names))
    for i, bench in enumerate(("MMLU", "HellaSwag")):
        vals = [PRUNING_METHODS[n][i] for n in names]
        bars = ax.bar(x + (i - 0.5) * 0.4, vals, 0.4, label=bench, color=style.color(i))
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=1)
    ax.set_xticks(x, names)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Pruned 8B-class models by method ({PAPER})")
    ax.legend()
    return fig


@style.house
def head_merge(result: dict, ax=None):
    """Merged minus plain held-out loss per heads target and phase, with 95% bootstrap intervals over windows."""
    rows = result["rows"]
    fig, ax = style.new_axes(ax, figsize=(8.5, 1.2 + 0.55 * len(rows)))
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows):
        lo, hi = r["ci95"]
        color = style.color(0 if hi < 0 else 3 if lo > 0 else 7)
        ax.errorbar(r["diff"], yi, xerr=[[r["diff"] - lo], [hi - r["diff"]]], fmt="o", color=color, capsize=4)
        ax.annotate(f"{r['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]", (hi, yi), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.axvline(0, color="0.3", lw=1)
    teacher = result["teacher_heads"]
    ax.set_yticks(y, [f"{teacher} -> {r['heads']} heads, {r['phase']}" for r in rows], fontsize=8.5)
    ax.set_xlabel("held-out loss, merged - not merged (nats/token; < 0: merging helps)")
    ax.set_title(f"Head residual merging (§2.3), paired over {rows[0]['windows']} held-out windows")
    left, right = ax.get_xlim()
    ax.set_xlim(left, right + 0.35 * (right - left))  # room for the labels
    return fig
