"""Figures from registry and paper data alone: no analysis run needed."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter

from analysis.models.paper import BENCHMARK_ORDER, FIGURE1, PEERS, TABLE2, TABLE3, TOKENS_VS_MMLU
from analysis.models.registry import BENCHMARKS, get
from figures import style

FAMILY = ("15B", "8B", "4B")
# Label offsets (points) where the default (right of the point) would collide with a neighbour.
_LABEL_AT = {"Gemma 7B": (-8, -12, "right"), "Mistral 7B": (8, -12, "left"), "Nemotron-4 15B": (-9, -3, "right"),
             "Llama-3 8B": (6, 7, "center")}


def _tokens(x, _pos) -> str:
    return f"{x / 1e12:g}T" if x >= 1e12 else f"{x / 1e9:g}B"


@style.house
def mmlu_vs_tokens(ax=None):
    """MMLU (5-shot) against training tokens, log x: the Minitron students need ~40x fewer tokens."""
    _, ax = style.new_axes(ax, figsize=(7.5, 4.8))
    for p in TOKENS_VS_MMLU:
        c = style.color(1) if p.minitron else style.color(0)
        ax.scatter(p.tokens, p.mmlu, s=70 if p.minitron else 45, color=c, zorder=3,
                   marker="*" if p.model.startswith("Minitron") else "o", edgecolor="white", lw=0.6)
        label = p.model + (" (≥15T)" if p.at_least else "")
        dx, dy, ha = _LABEL_AT.get(p.model, (8, -3, "left"))
        ax.annotate(label, (p.tokens, p.mmlu), xytext=(dx, dy), textcoords="offset points", ha=ha, fontsize=8.5)
    ax.scatter([], [], color=style.color(1), marker="*", s=70, label="Minitron students (distilled)")
    ax.scatter([], [], color=style.color(1), s=70, label="their teacher")
    ax.scatter([], [], color=style.color(0), s=45, label="other models")
    ax.legend(loc="lower left")
    ax.set_xscale("log")
    ax.set_xlim(4e10, 4e13)
    ax.xaxis.set_major_formatter(FuncFormatter(_tokens))
    ax.set_xlabel("training tokens (log scale; Minitron: distillation tokens only)")
    ax.set_ylabel("MMLU 5-shot accuracy (%)")
    ax.set_title(f"MMLU vs training tokens\nsource: {FIGURE1}")
    return ax


def benchmark_label(key: str) -> str:
    """'HellaSwag\n10-shot acc_norm': the task with the shots and metric the paper reports."""
    b = BENCHMARKS[key]
    return f"{b['task']}\n{b['shots']}-shot {b['metric']}"


def benchmark_table() -> tuple[list[str], list[str], np.ndarray]:
    """(models, benchmark labels, values [model x benchmark]) for the family (registry) and peers (paper)."""
    labels = [benchmark_label(b) for b in BENCHMARK_ORDER]
    rows, models = [], []
    for alias in FAMILY:
        spec = get(alias)
        by_key = {e.benchmark: e.value for e in spec.evals}
        rows.append([by_key.get(b, np.nan) for b in BENCHMARK_ORDER])
        models.append(spec.display_name)
    for name, values in PEERS.items():
        rows.append(list(values))
        models.append(name)
    return models, labels, np.array(rows, dtype=float)


@style.house
def benchmark_comparison(ax=None):
    """Grouped bars: Nemotron-4 15B, Minitron 8B and 4B, and peers, on the paper's nine benchmarks."""
    models, labels, values = benchmark_table()
    _, ax = style.new_axes(ax, figsize=(12, 4.8))
    width = 0.8 / len(models)
    x = np.arange(len(labels))
    for i, model in enumerate(models):
        hatch = "" if i < len(FAMILY) else "//"
        ax.bar(x + (i - (len(models) - 1) / 2) * width, values[i], width, label=model, color=style.color(i),
               hatch=hatch, edgecolor="white", lw=0.5)
    ax.set_xticks(x, labels, fontsize=8.5)
    ax.set_ylabel("score (%)")
    ax.set_xlabel("benchmark, with the shots and metric the paper reports")
    ax.set_title(f"Benchmarks: the Minitron family and peers (hatched)\nsources: {TABLE2} (15B, 8B, peers), "
                 f"{TABLE3} (4B)")
    ax.legend(ncols=len(models), loc="upper center", bbox_to_anchor=(0.5, -0.24))
    ax.set_ylim(0, 100)
    return ax


@style.house
def family_architecture(axes=None) -> plt.Figure:
    """Widths (hidden, MLP, heads) and parameter counts of the family, computed from the registry."""
    specs = [get(a) for a in FAMILY]
    names = [s.display_name for s in specs]
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    fig = axes[0].figure
    widths = {"hidden (channels)": [s.arch.hidden for s in specs], "MLP (neurons)": [s.arch.mlp for s in specs],
              "attention (heads x head_dim)": [s.arch.heads * s.arch.head_dim for s in specs]}
    _grouped(axes[0], names, widths, "width (units)", "Widths per layer (32 layers each)")
    counts = [s.arch.params() for s in specs]
    params = {"non-embedding": [c["non_embedding"] / 1e9 for c in counts],
              "embedding (in + out)": [c["embedding"] / 1e9 for c in counts]}
    bottom = np.zeros(len(specs))
    for i, (label, vals) in enumerate(params.items()):
        axes[1].bar(names, vals, bottom=bottom, label=label, color=style.color(i + 3), width=0.6)
        bottom += np.array(vals)
    for x, total in enumerate(bottom):
        axes[1].text(x, total, f"{total:.2f}B", ha="center", va="bottom", fontsize=9)
    axes[1].set_ylabel("parameters (billions)")
    axes[1].set_title("Parameters, computed from the architecture", fontsize=11)
    axes[1].legend(loc="upper right")
    axes[1].set_ylim(0, bottom.max() * 1.15)
    fig.suptitle("The Minitron family: Nemotron-4 15B and its pruned students")
    return fig


def _grouped(ax, names, series: dict, ylabel: str, title: str):
    width = 0.8 / len(series)
    x = np.arange(len(names))
    for i, (label, vals) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=label, color=style.color(i))
        ax.bar_label(bars, fmt="%d", fontsize=7.5, padding=1)
    ax.set_xticks(x, names)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper right")
    ax.set_ylim(0, max(max(v) for v in series.values()) * 1.15)
