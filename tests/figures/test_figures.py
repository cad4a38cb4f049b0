"""Every figure renders from an analysis run (synthetic, and real when the engine is present)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from analysis.importance.results import load_run
from analysis.pruning.ranking import heads_kept, kept_overlap
from figures import family, importance, layers
from figures.render import FAMILY_FIGURES, RUN_FIGURES, draw_family, draw_run
from tests.helpers import run_cli, synthetic_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return synthetic_run(tmp_path_factory.mktemp("runs") / "tiny-synthetic" / "r1")


def test_heads_kept_keeps_top_k_of_every_group():
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0]])  # 2 groups of 4
    assert heads_kept(scores, kv_heads=2, keep_per_group=2).int().tolist() == [[1, 1, 0, 0, 0, 0, 1, 1]]
    with pytest.raises(ValueError):
        heads_kept(scores, kv_heads=2, keep_per_group=5)
    assert kept_overlap(torch.arange(10.0), torch.arange(10.0).flip(0), 5) == 0.0


@pytest.mark.parametrize("name", list(RUN_FIGURES))
def test_each_run_figure_draws_into_a_given_ax_or_returns_a_figure(run_dir, name):
    run = load_run(run_dir)
    drawn = RUN_FIGURES[name][1](run)
    fig = drawn if isinstance(drawn, plt.Figure) else drawn.figure
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    assert any(ax.get_xlabel() and ax.get_ylabel() for ax in axes)
    title = fig.get_suptitle() or axes[0].get_title()
    assert "tiny-synthetic" in title and "pydoc" in title  # names model and data
    plt.close(fig)


def test_plot_functions_use_the_callers_axes(run_dir):
    run = load_run(run_dir)
    fig, ax = plt.subplots()
    assert layers.block_drop_curves(run, ax=ax) is ax
    assert importance.channel_importance(run, ax=ax) is ax
    assert family.mmlu_vs_tokens(ax=ax) is ax
    plt.close(fig)


def test_aggregation_matrices_are_symmetric_with_unit_diagonal(run_dir):
    labels, rho, overlap, k = importance.aggregation_matrices(load_run(run_dir))
    assert len(labels) == 9 and "L2/mean" in labels
    assert (abs(rho - rho.T) < 1e-9).all() and (abs(rho.diagonal() - 1) < 1e-9).all()
    assert (overlap.diagonal() == 1).all() and k == round(64 * 2 / 3)


def test_draw_run_writes_png_and_svg_atomically(run_dir):
    written = draw_run(run_dir)
    assert {p.name for p in written} == {f"{n}.{e}" for n in RUN_FIGURES for e in ("png", "svg")}
    for p in written:
        assert p.parent == run_dir / "figures" and p.stat().st_size > 1000
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG
    assert not [p for p in (run_dir / "figures").iterdir() if p.name.startswith(".")]  # no temp files left


def test_draw_family_from_registry_alone(tmp_path):
    written = draw_family(tmp_path)
    assert {p.stem for p in written} == set(FAMILY_FIGURES) and len(written) == 2 * len(FAMILY_FIGURES)


def test_benchmark_table_takes_the_family_from_the_registry():
    models, labels, values = family.benchmark_table()
    assert models[:3] == ["Nemotron-4 15B", "Minitron-8B-Base", "Minitron-4B-Base"]
    assert values[1, labels.index("MMLU\n5-shot acc")] == 63.8 and values[2, labels.index("HumanEval\n0-shot pass@1")] == 23.3
    # the paper's sixth column is TruthfulQA (0-shot mc2), not TriviaQA; every cell is filled
    assert values[:, labels.index("TruthfulQA\n0-shot mc2")].tolist() == [40.7, 42.6, 42.9, 43.9, 42.6, 45.0]
    assert labels[3] == "HellaSwag\n10-shot acc_norm" and not np.isnan(values).any()


def test_cli_figures(tmp_path, run_dir):
    result = run_cli("figures", "--out", tmp_path / "fam")
    assert result.code == 0, result.err
    assert (tmp_path / "fam" / "benchmarks.png").exists()
    result = run_cli("figures", "--run", run_dir, "--out", tmp_path / "run")
    assert result.code == 0 and (tmp_path / "run" / "head_importance.svg").exists()


def test_cli_figures_on_a_non_run_is_one_line_error(tmp_path):
    r = run_cli("figures", "--run", tmp_path)
    assert r.code == 2 and r.err.strip().count("\n") == 0 and "not an analysis run" in r.err


def test_every_figure_renders_from_a_real_tiny_run(tiny_dir, tmp_path):
    """A real analysis run of a tiny random model (not synthetic numbers) draws every run figure."""
    from analysis.data import DataConfig
    from analysis.importance.pipeline import AnalysisConfig, run_analysis
    from analysis.models.loading import LoadConfig

    d, _ = tiny_dir
    cfg = AnalysisConfig(load=LoadConfig(model=str(d), device="cpu"),
                         data=DataConfig(seq_len=16, calib_samples=4, eval_samples=2), batch_size=2,
                         block_sizes=(1, 2))
    written = draw_run(run_analysis(cfg, out=tmp_path / "run"))
    names = {p.name for p in written}
    for name in RUN_FIGURES:
        assert f"{name}.png" in names and f"{name}.svg" in names
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG and p.stat().st_size > 10_000


def test_plot_functions_leave_the_callers_matplotlib_settings_alone(run_dir):
    before = dict(plt.rcParams)
    plt.close(layers.layer_sensitivity(load_run(run_dir)))
    plt.close(family.mmlu_vs_tokens().figure)
    after = dict(plt.rcParams)
    assert {k for k in before if before[k] != after[k]} == set()


def test_ranking_stability_figure_draws_from_a_bootstrap_section(tmp_path):
    from analysis.importance.bootstrap import bootstrap
    from analysis.importance.results import write_run
    from figures.stability import ranking_stability
    from tests.helpers import SYNTHETIC, synthetic_metrics, synthetic_tensors

    tensors = synthetic_tensors(SYNTHETIC)
    metrics = synthetic_metrics(SYNTHETIC, tensors)
    g = torch.Generator().manual_seed(0)
    L, H, F, D = SYNTHETIC.layers, SYNTHETIC.heads, SYNTHETIC.mlp, SYNTHETIC.hidden
    metrics["bootstrap"] = bootstrap({"heads": torch.rand(5, L, H, generator=g), "neurons": torch.rand(5, L, F, generator=g),
                                      "channels": torch.rand(5, L, 2, D, generator=g)}, SYNTHETIC.kv_heads, iters=10)
    run = load_run(write_run(tmp_path / "r", tensors, metrics))
    fig, axes = plt.subplots(1, 2)
    assert ranking_stability(run, axes=axes) is fig
    assert "tiny-synthetic" in fig.get_suptitle() and axes[1].get_xscale() == "log"
    plt.close(fig)
    assert (tmp_path / "r" / "figures" / "ranking_stability.png").name in [p.name for p in draw_run(tmp_path / "r")]
