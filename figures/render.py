"""Draw every figure of an analysis run, or of the registry, to PNG and SVG files.

``draw_run`` / ``draw_family`` are what commands call: they follow the output contract
(``analysis.core.io``: the target is checked before drawing, files are staged and recorded in the
directory's marker, files of the user's are never replaced without ``force``). ``render_run`` /
``render_family`` draw into a directory the caller owns (a card's staging directory).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt

from analysis.core.errors import MinitronError
from analysis.core.io import atomic_file, check_output, output_files
from analysis.importance.results import METRICS, RunResult, load_run
from figures import family, importance, layers, stability, style

FORMATS = ("png", "svg")
DEFAULT_FAMILY_OUT = "figures/out"  # relative to the working directory; git-ignored in this repository
RUN_SUBDIR = "figures"  # a run's own figures: <run>/figures/


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


def run_figure_names(run: RunResult) -> list[str]:
    """Names of the figures ``run_figures`` draws for this run (its tensors and metrics sections)."""
    return ([n for n, (needs, _) in RUN_FIGURES.items() if all(k in run.tensors for k in needs)]
            + [n for n, (section, _) in RUN_METRIC_FIGURES.items() if section in run.metrics])


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


def render_run(run: RunResult, out_dir: Path) -> list[Path]:
    """Draw a run's figures into ``out_dir`` (owned by the caller); returns the files written."""
    written = []
    for name, fig in run_figures(run).items():
        try:
            written += save_figure(fig, out_dir, name)
        finally:
            plt.close(fig)
    if not written:
        raise MinitronError(f"{run.path}: the run holds none of the tensors the figures need")
    return written


def render_family(out_dir: Path) -> list[Path]:
    """Draw the registry figures (MMLU vs tokens, benchmarks, architecture) into ``out_dir``."""
    written = []
    for name, draw in FAMILY_FIGURES.items():
        fig = _figure(draw())
        try:
            written += save_figure(fig, Path(out_dir), name)
        finally:
            plt.close(fig)
    return written


def _names(names, prefix: str = "") -> list[str]:
    return [f"{prefix}{n}.{fmt}" for n in names for fmt in FORMATS]


def draw_run(run_dir: str | Path, out_dir: str | Path | None = None, force: bool = False) -> list[Path]:
    """Draw a run's figures into ``<run_dir>/figures/`` (recorded in the run's marker) or ``out_dir``."""
    run = load_run(run_dir)
    target, prefix = (Path(out_dir), "") if out_dir else (Path(run_dir), f"{RUN_SUBDIR}/")
    check_output(target, force, _names(run_figure_names(run), prefix))
    with output_files(target, "figures") as stage:
        written = render_run(run, stage / prefix if prefix else stage)
    return [target / p.relative_to(stage) for p in written]


def draw_family(out_dir: str | Path, force: bool = False) -> list[Path]:
    """Draw the registry figures into ``out_dir`` under the output contract."""
    target = Path(out_dir)
    check_output(target, force, _names(FAMILY_FIGURES))
    with output_files(target, "figures") as stage:
        written = render_family(stage)
    return [target / p.relative_to(stage) for p in written]


def draw_compare(run_dir: str | Path, force: bool = False) -> list[Path]:
    """Draw a compare run's figures (CKA heatmap, KL by position, worst tokens) into ``<run_dir>/figures/``,
    recorded in the run's marker."""
    from analysis.evaluation.compare import load_compare
    from figures.compare import compare_figures

    target = Path(run_dir)
    figures = compare_figures(load_compare(run_dir))
    try:
        check_output(target, force, _names(figures, f"{RUN_SUBDIR}/"))
        with output_files(target, "compare") as stage:
            written = [p for name, fig in figures.items() for p in save_figure(fig, stage / RUN_SUBDIR, name)]
    finally:
        for fig in figures.values():
            plt.close(fig)
    return [target / p.relative_to(stage) for p in written]


def run_figures_current(run_dir: str | Path) -> bool:
    """Whether ``<run_dir>/figures`` holds every figure of the run, drawn after its metrics were written."""
    run_dir = Path(run_dir)
    try:
        made = (run_dir / METRICS).stat().st_mtime
        run = load_run(run_dir)
    except (OSError, MinitronError):
        return False
    files = [run_dir / RUN_SUBDIR / f for f in _names(run_figure_names(run))]
    return bool(files) and all(f.is_file() and f.stat().st_mtime >= made for f in files)
