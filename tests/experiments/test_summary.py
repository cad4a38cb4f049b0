"""Summaries over seeds on hand-made result documents, checked against scipy and hand counts."""

from __future__ import annotations

import pytest

from analysis.experiments.report import RENDERERS
from analysis.experiments.summary import summarize
from analysis.importance.results import AGGREGATIONS
from analysis.models.paper import AGGREGATION_LOSS, AXES_LOSS

scipy_stats = pytest.importorskip("scipy.stats")
AGGS = [f"{b}_{s}" for b in AGGREGATIONS for s in AGGREGATIONS]
TARGET = {"hidden": 4, "ffn": 8, "heads": 2, "layers": None}
COMMON = {"title": "t", "reproduces": "r", "seeds": [0, 1, 2], "collapse_threshold": 10.0,
          "model": {"name": "m", "params": 100, "note": "n"}, "scale": {"name": "full", "seq_len": 8}}


def aggregation_doc(losses: dict[str, list[float]]) -> dict:
    """One target; ``losses``: aggregation -> per-seed loss."""
    per_seed = [{"seed": k, "teacher_loss": 3.0 + 0.1 * k,
                 "targets": {"t": {"params": 50, "loss": {a: v[k] for a, v in losses.items()}}}} for k in range(3)]
    return COMMON | {"experiment": "aggregation", "per_seed": per_seed,
                     "settings": {"targets": {"t": TARGET}, "params": {"t": 50}}}


def test_aggregation_ranks_live_rows_and_correlates_with_the_paper_per_seed():
    paper = {a: AGGREGATION_LOSS[tuple(a.split("_"))][0] for a in AGGS}
    # ours follow the paper's order up to noise, except two collapsed rows (>= ln|V| = 10 here on some seed)
    losses = {a: [paper[a] - 1 + 0.05 * ((i * 7 + k) % 3) for k in range(3)] for i, a in enumerate(AGGS)}
    losses["var_var"] = [9.0, 10.5, 9.5]  # collapsed on seed 1
    losses["var_l2"] = [11.0, 11.0, 11.0]
    s = summarize(aggregation_doc(losses))["targets"]["t"]
    rows = {r["aggregation"]: r for r in s["rows"]}
    assert rows["var_var"]["collapsed"] and rows["var_var"]["rank"] is None and rows["var_l2"]["rank"] is None
    live = [a for a in AGGS if a not in ("var_var", "var_l2")]
    assert s["live"] == 7 and sorted(rows[a]["rank"] for a in live) == list(range(1, 8))
    means = {a: sum(losses[a]) / 3 for a in live}
    assert min(live, key=means.get) == next(a for a in live if rows[a]["rank"] == 1)
    rhos = [scipy_stats.spearmanr([losses[a][k] for a in live], [paper[a] for a in live]).statistic for k in range(3)]
    assert s["spearman"].mean == pytest.approx(sum(rhos) / 3, abs=1e-6)
    assert s["agreement"] == "our order agrees with the paper's"
    assert [r["paper_rank"] for r in s["rows"]] == list(range(1, 10))  # rows in the paper's order


def test_too_few_live_rows_are_not_ranked_and_the_table_says_so():
    losses = {a: [12.0, 12.0, 12.0] for a in AGGS}
    losses["l2_mean"] = [9.0, 9.1, 9.2]
    doc = aggregation_doc(losses)
    s = summarize(doc)["targets"]["t"]
    assert s["spearman"] is None and s["agreement"].startswith("too few rows")
    text = "\n".join(RENDERERS["aggregation"](doc))
    assert "collapsed" in text and "n/a" in text


def axes_doc(paper_rows: dict[str, list[float]]) -> dict:
    """Pruning axes with the paper group's distilled losses per seed; everything else constant."""
    names = list(AXES_LOSS)
    variant = {"axes": ["mlp"], "depth_metric": "bi", "target": TARGET, "params": 40}
    matched = ("heads", "mlp", "channels", "depth (BI)", "depth (drop loss)", "width (mlp+channels)")
    per_seed = []
    for k in range(3):
        paper = {n: {"zero_shot_loss": 8.0, "distilled_loss": paper_rows[n][k], "distilled_kl": 1.0, "zero_shot_kl": 2.0}
                 for n in names}
        per_seed.append({"seed": k, "teacher_loss": 3.0, "paper": paper,
                         "matched": {m: {"zero_shot_loss": 4.0 + 0.01 * k + 0.1 * i} for i, m in enumerate(matched)}})
    return COMMON | {"experiment": "pruning-axes", "per_seed": per_seed,
                     "settings": {"fraction": 0.1, "steps": 5, "batch_size": 2,
                                  "groups": {"paper": dict.fromkeys(names, variant),
                                             "matched": dict.fromkeys(matched, variant)}}}


def test_axes_comparisons_state_a_direction_only_when_the_interval_excludes_zero():
    rows = {"width (mlp+heads+channels)": [5.0, 6.0, 7.0], "depth (drop loss)": [5.5, 6.4, 7.6],  # width lower
            "depth (BI)": [5.4, 6.5, 7.5],  # drop loss vs BI: differences +0.1, -0.1, +0.1: no difference
            "width (mlp+heads)": [4.5, 5.6, 6.4],  # opposite to the paper
            "depth+width": [9.0, 11.0, 9.5]}  # collapsed on seed 1
    s = summarize(axes_doc(rows))
    after = {(c["a"], c["b"]): c for c in s["comparisons"] if c["key"] == "distilled_loss"}
    c = after[("width (mlp+heads+channels)", "depth (drop loss)")]
    assert c["diff"].hi < 0 and c["versus_paper"] == "agrees with the paper"
    assert c["words"] == "width (mlp+heads+channels) is lower than depth (drop loss)"
    c = after[("depth (drop loss)", "depth (BI)")]
    assert c["versus_paper"] == "no measurable difference" and c["words"].startswith("no measurable difference")
    assert after[("width (mlp+heads+channels)", "width (mlp+heads)")]["versus_paper"] == "opposite to the paper"
    assert after[("width (mlp+heads+channels)", "depth+width")]["diff"] is None  # collapsed: not compared
    text = "\n".join(RENDERERS["pruning-axes"](axes_doc(rows)))
    assert "agrees with the paper" in text and "opposite to the paper" in text and "not compared" in text
    assert f"{AXES_LOSS['depth (BI)']:.3f}" in text  # the paper's number, in the paper's column


def test_axes_figure_draws_ours_and_the_paper_apart():
    import matplotlib.pyplot as plt

    from figures import experiments as fx

    rows = {n: [5.0 + i, 5.1 + i, 5.2 + i] for i, n in enumerate(AXES_LOSS)}
    fig = fx.pruning_axes(axes_doc(rows))
    titles = [ax.get_title() for ax in fig.axes]
    assert any("paper" in t and "Table 1" in t for t in titles) and any("this toolkit" in t for t in titles)
    plt.close(fig)
