"""Figures of the experiments: their result documents (``notebooks/results/*.json``) in, matplotlib figures out.

Intervals come from ``analysis.experiments.summary`` (95% t over seeds); the paper's numbers are drawn
apart from ours and labelled with their table.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from analysis.experiments.stats import fmt, interval
from analysis.experiments.summary import summarize
from analysis.models.paper import AGGREGATION_TABLE, AXES_LOSS, AXES_TABLE, PRUNING_METHODS
from analysis.models.registry import PAPER
from figures import style


def _err(ivs) -> tuple[np.ndarray, np.ndarray]:
    """Means and asymmetric error bars (2, n) of intervals (zero bars for single seeds)."""
    means = np.array([iv.mean for iv in ivs])
    lo = np.array([iv.mean - iv.lo if iv.lo is not None else 0.0 for iv in ivs])
    hi = np.array([iv.hi - iv.mean if iv.hi is not None else 0.0 for iv in ivs])
    return means, np.vstack([lo, hi])


def _seeds_note(doc: dict) -> str:
    small = " · CI scale: numbers mean nothing" if doc["scale"]["name"] == "small" else ""
    return f"mean and 95% t-interval over {len(doc['seeds'])} seeds{small}"


@style.house
def aggregation_study(doc: dict, axes=None) -> plt.Figure:
    """Zero-shot loss per aggregation and target (mean, 95% interval over seeds) beside the paper's (Table 11).

    Rows follow the paper's order (its best at the top); hollow markers: collapsed (loss ≥ ln |V| on a seed).
    """
    s = summarize(doc)
    names = list(s["targets"])
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained", width_ratios=(3, 1.2), sharey=True)
    fig = axes[0].figure
    rows = s["targets"][names[0]]["rows"]  # paper order
    y = np.arange(len(rows))
    for k, name in enumerate(names):
        by_agg = {r["aggregation"]: r for r in s["targets"][name]["rows"]}
        cells = [by_agg[r["aggregation"]] for r in rows]
        means, err = _err([c["interval"] for c in cells])
        off = (k - (len(names) - 1) / 2) * 0.22
        rho = s["targets"][name]["spearman"]
        label = f"{name}: ρ vs paper {fmt(rho, 2, sign=True) if rho else 'n/a'}"
        axes[0].errorbar(means, y + off, xerr=err, fmt="none", ecolor=style.color(k), capsize=2, lw=1.2)
        for c, m, yy in zip(cells, means, y + off):
            axes[0].plot(m, yy, "o", ms=6, color=style.color(k), mfc="white" if c["collapsed"] else style.color(k))
        axes[0].plot([], [], "o", color=style.color(k), label=label)
    axes[0].plot([], [], "o", color="0.4", mfc="white", label="hollow: collapsed (≥ ln |V| on a seed)")
    axes[0].axvline(doc["collapse_threshold"], color="0.3", ls=":", lw=1, label="ln |V| (uniform guess)")
    axes[0].axvline(s["teacher_loss"].mean, color="0.3", ls="--", lw=1, label=f"unpruned {s['teacher_loss'].mean:.2f}")
    axes[0].set_yticks(y, [r["aggregation"] for r in rows])
    axes[0].invert_yaxis()
    axes[0].set_xlabel("zero-shot held-out loss (nats/token)")
    axes[0].set_ylabel("aggregation (batch_seq)")
    axes[0].set_title("this toolkit, embedded default", fontsize=11)
    axes[0].legend(loc="upper left", bbox_to_anchor=(0, -0.14), ncol=2, fontsize=8)
    axes[1].barh(y, [r["paper_loss"] for r in rows], color=style.color(len(names)), height=0.5)
    for yy, r in zip(y, rows):
        axes[1].text(r["paper_loss"] + 0.05, yy, f"{r['paper_loss']:.2f}", va="center", fontsize=8)
    axes[1].set_xlim(0, max(r["paper_loss"] for r in rows) * 1.2)
    axes[1].set_xlabel("loss")
    axes[1].set_title(f"paper, {AGGREGATION_TABLE}\n(15B → Nemotron-3 8B shape)", fontsize=10)
    fig.suptitle(f"Aggregation of importance scores ({_seeds_note(doc)})")
    return fig


def _wrap(name: str) -> str:
    """Narrow tick labels: 'width (mlp+heads)' -> 'width\n(mlp+\nheads)'."""
    return name.replace(" (", "\n(").replace("+", "+\n")


@style.house
def pruning_axes(doc: dict, axes=None) -> plt.Figure:
    """Loss per pruning variant at the paper's shapes (zero-shot, after distillation) beside the paper's Table 1,
    and zero-shot at a matched share of parameters. Error bars: 95% t-interval over seeds."""
    s = summarize(doc)
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(15, 5), layout="constrained", width_ratios=(5, 2.4, 7))
    fig = axes[0].figure
    steps = doc["settings"]["steps"]
    paper = s["paper"]
    x = np.arange(len(paper))
    for k, (key, label) in enumerate((("zero_shot_loss", "zero-shot"), ("distilled_loss", f"after {steps} steps"))):
        means, err = _err([r[key]["interval"] for r in paper])
        axes[0].bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=err, capsize=3, color=style.color(k), label=label)
    axes[0].set_xticks(x, [_wrap(r["variant"]) for r in paper], fontsize=8)
    axes[0].set_title("this toolkit: the paper's shapes (~50% removed)", fontsize=11)
    axes[1].plot([AXES_LOSS[r["variant"]] for r in paper], x, "D", color=style.color(2))  # dots: the axis is cut
    for yy, r in zip(x, paper):
        axes[1].text(AXES_LOSS[r["variant"]] + 0.015, yy, f"{AXES_LOSS[r['variant']]:.3f}", va="center", fontsize=8)
    axes[1].set_yticks(x, [r["variant"] for r in paper], fontsize=8)
    axes[1].invert_yaxis()
    axes[1].set_xlim(1.9, 2.25)
    axes[1].set_xlabel("LM loss after ~1.8B tokens")
    axes[1].set_title(f"paper, {AXES_TABLE}\n(15B → ~8B)", fontsize=10)
    matched = s["matched"]
    means, err = _err([r["zero_shot_loss"]["interval"] for r in matched])
    xm = np.arange(len(matched))
    axes[2].bar(xm, means, 0.6, yerr=err, capsize=3, color=style.color(0), label="zero-shot")
    axes[2].set_xticks(xm, [_wrap(r["variant"]) for r in matched], fontsize=8)
    axes[2].set_title(f"this toolkit: a matched share ({doc['settings']['fraction']:.0%} removed), zero-shot",
                      fontsize=11)
    for ax in (axes[0], axes[2]):
        ax.axhline(s["teacher_loss"].mean, color="0.25", lw=1, ls="--", label="unpruned")
        ax.axhline(doc["collapse_threshold"], color="0.4", lw=1, ls=":", label="ln |V| (uniform guess)")
        ax.set_ylabel("held-out loss (nats/token)")
    axes[0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.suptitle(f"Pruning axes ({_seeds_note(doc)})")
    return fig


@style.house
def distill_vs_finetune(doc: dict, axes=None) -> plt.Figure:
    """Held-out loss and KL to the teacher over training, distillation vs fine-tuning, mean and band over seeds."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    fig = axes[0].figure
    seeds = doc["per_seed"]
    for i, mode in enumerate(("distill", "finetune")):
        steps = [e["step"] for e in seeds[0]["curves"][mode]]
        for ax, key in zip(axes, ("loss", "kl")):
            ivs = [interval([s["curves"][mode][j][key] for s in seeds]) for j in range(len(steps))]
            means = [iv.mean for iv in ivs]
            ax.plot(steps, means, marker="o", color=style.color(i), label=mode)
            if ivs[0].lo is not None:
                ax.fill_between(steps, [iv.lo for iv in ivs], [iv.hi for iv in ivs], color=style.color(i), alpha=0.2)
    teacher = summarize(doc)["teacher_loss"].mean
    axes[0].axhline(teacher, color="0.25", lw=1, ls="--", label="teacher")
    axes[0].set_ylabel("held-out LM loss (nats/token)")
    axes[1].set_ylabel("KL(teacher || student) (nats/token)")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.legend()
    fig.suptitle(f"Healing a pruned student ({doc['settings']['params'] / 1e6:.1f}M): distillation vs fine-tuning\n"
                 f"{_seeds_note(doc)}", fontsize=11)
    return fig


@style.house
def layer_drop_curves(doc: dict, ax=None):
    """Loss increase when n contiguous layers are dropped, by first dropped layer (arXiv:2408.11796 Fig. 8)."""
    s = summarize(doc)
    fig, ax = style.new_axes(ax)
    for i, (n, b) in enumerate(s["blocks"].items()):
        starts = np.arange(len(b["mean_curve"]))
        ax.plot(starts, b["mean_curve"], marker="o", ms=3.5, color=style.color(i),
                label=f"{n} layer{'s' if n > 1 else ''}")
        if b["curve"][0].lo is not None:
            ax.fill_between(starts, [iv.lo for iv in b["curve"]], [iv.hi for iv in b["curve"]], color=style.color(i),
                            alpha=0.18, lw=0)
    ax.set_yscale("symlog", linthresh=0.1)  # one-layer drops are ~0.1 nats, 16-layer drops several nats
    ax.set_xlabel("first dropped layer (index)")
    ax.set_ylabel("loss increase over the full model (nats)")
    ax.set_title(f"Dropping contiguous layers: {doc['model']['name']}\n{_seeds_note(doc)}", fontsize=11)
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
def head_merge(doc: dict, ax=None):
    """Merged minus not-merged held-out loss per heads target and phase; error bars: 95% t-interval over seeds."""
    s = summarize(doc)
    rows = [r for r in s["rows"] if r["diff"]["diff"] is not None]
    fig, ax = style.new_axes(ax, figsize=(8.5, 1.4 + 0.55 * len(rows)))
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows):
        d = r["diff"]["diff"]
        lo, hi = (d.lo, d.hi) if d.lo is not None else (d.mean, d.mean)
        color = style.color(0 if hi < 0 else 3 if lo > 0 else 7)
        ax.errorbar(d.mean, yi, xerr=[[d.mean - lo], [hi - d.mean]], fmt="o", color=color, capsize=4)
        ax.annotate(fmt(d, 2, sign=True), (hi, yi), xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(y, [f"{s['teacher_heads']} -> {r['heads']} heads, {r['phase']}" for r in rows], fontsize=8.5)
    ax.set_xlabel("held-out loss, merged - not merged (nats/token; < 0: merging helps)")
    ax.set_title(f"Head residual merging (paper §2.3), paired per seed ({_seeds_note(doc)})")
    left, right = ax.get_xlim()
    ax.set_xlim(left, right + 0.35 * (right - left))  # room for the labels
    return fig
