"""Draw every figure of an analysis run, or of the registry, to PNG and SVG files (written atomically)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt

from analysis.core.errors import MinitronError
from analysis.core.io import atomic_file
from analysis.importance.results import RunResult, load_run
from figures import family, importance, layers, stability, style

FORMATS = ("png", "svg")


def _figure(drawn) -> plt.Figure:
    return drawn if isinstance(drawn, plt.Figure) else drawn.figure


# name -> (needed tensors, function of the run). Order is the order figures appear in cards.
RUN_FIGURES: dict[str, tuple[tuple[str, ...], Callable]] = {
    "layer_sensitivity": (("drop_layer_loss", "block_importance"), layers.layer_sensitivity),
    "block_drop": (("drop_block_loss.n1",), layers.block_drop_curves),
    "head_importance": (("heads",), importance.head_heatmap),
    "neuron_importance": (("neurons",), importance.neuron_importance),
    "channel_importance": (("channels",), importance.channel_importance),
    "aggregation": (("channels.l2_mean", "channels.mean_mean"), importance.aggregation_comparison),
}

# name -> (metrics.json section needed, function of the run): figures of optional analyses.
RUN_METRIC_FIGURES: dict[str, tuple[str, Callable]] = {
    "ranking_stability": ("bootstrap", stability.ranking_stability),
}

FAMILY_FIGURES: dict[str, Callable] = {
    "mmlu_vs_tokens": family.mmlu_vs_tokens,
    "benchmarks": family.benchmark_comparison,
    "family_architecture": family.family_architecture,
}


def save_figure(fig: plt.Figure, out_dir: Path, name: str, formats=FORMATS) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.<fmt>`` for each format, each written atomically."""
    written = []
    for fmt in formats:
        with atomic_file(Path(out_dir) / f"{name}.{fmt}") as tmp, style.styled():
            fig.savefig(tmp, format=fmt)
        written.append(Path(out_dir) / f"{name}.{fmt}")
    return written


def run_figures(run: RunResult) -> dict[str, plt.Figure]:
    """Every run figure whose tensors are present, by name (figures are left open; close them)."""
    out = {}
    for name, (needs, draw) in RUN_FIGURES.items():
        if all(k in run.tensors for k in needs):
            out[name] = _figure(draw(run))
    for name, (section, draw) in RUN_METRIC_FIGURES.items():
        if section in run.metrics:
            out[name] = _figure(draw(run))
    return out


def draw_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw a run's figures into ``<run_dir>/figures/`` (or ``out_dir``); returns the files written."""
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir else Path(run_dir) / "figures"
    written = []
    for name, fig in run_figures(run).items():
        try:
            written += save_figure(fig, out, name)
        finally:
            plt.close(fig)
    if not written:
        raise MinitronError(f"{run_dir}: the run holds none of the tensors the figures need")
    return written


def draw_compare(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw a compare run's figures (CKA heatmap, KL by position, worst tokens) into ``<run_dir>/figures/``."""
    from analysis.evaluation.compare import load_compare
    from figures.compare import compare_figures

    result = load_compare(run_dir)
    out = Path(out_dir) if out_dir else Path(run_dir) / "figures"
    written = []
    for name, fig in compare_figures(result).items():
        try:
            written += save_figure(fig, out, name)
        finally:
            plt.close(fig)
    return written


def draw_family(out_dir: str | Path) -> list[Path]:
    """Draw the registry figures (MMLU vs tokens, benchmarks, architecture) into ``out_dir``."""
    written = []
    for name, draw in FAMILY_FIGURES.items():
        fig = _figure(draw())
        try:
            written += save_figure(fig, Path(out_dir), name)
        finally:
            plt.close(fig)
    return written
