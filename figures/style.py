"""One look for every figure: seaborn's colour-blind-safe palette, readable type, light grid.

Plot functions are decorated with ``@house``: they draw inside ``styled()``, a ``plt.rc_context``, so
the caller's global matplotlib settings are never changed. ``save_figure`` saves inside it too.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg", force=False)  # figures are written to files; never open a window

import matplotlib.pyplot as plt
import seaborn as sns

PALETTE = sns.color_palette("colorblind")  # Okabe-Ito-like, safe for the common colour-vision deficiencies
SEQUENTIAL = "mako_r"  # light = low, dark = high; perceptually uniform
DPI = 150

RC = {
    "figure.dpi": DPI, "savefig.dpi": DPI, "savefig.bbox": "tight",
    "axes.titlesize": 12, "axes.titleweight": "bold", "axes.labelsize": 10,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9, "legend.frameon": False,
    "figure.titlesize": 13, "figure.titleweight": "bold", "svg.fonttype": "none",
}


@contextmanager
def styled():
    """Use the house style (seaborn whitegrid, colour-blind palette) inside the block only."""
    with plt.rc_context():
        sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, rc=RC)
        yield


def house(draw):
    """Decorator: run a plot function inside ``styled()``."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with styled():
            return draw(*args, **kwargs)
    return wrapper


def color(i: int):
    """The i-th palette colour."""
    return PALETTE[i % len(PALETTE)]


def new_axes(ax=None, figsize=(7.0, 4.2)):
    """``ax`` and its figure, or a fresh figure with one Axes in the house style."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def subtitle(run) -> str:
    """'<model> · <data source>, <n> x <seq_len> tokens' for figure titles."""
    m, d = run.metrics.get("model", {}), run.metrics.get("data", {})
    cfg = d.get("config", {})
    data = f"{d.get('source', '?')}, {cfg.get('calib_samples', '?')} x {cfg.get('seq_len', '?')} tokens"
    return f"{m.get('name', 'model')} · {data}"
