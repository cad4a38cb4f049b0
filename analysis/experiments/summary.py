"""From an experiment's JSON (``analysis.experiments.runner``) to intervals over seeds and the words they allow.

One function per experiment, registered by name; each returns plain data that the README
generator (``report``), the figures and the notebooks read. Intervals and words follow
``analysis.experiments.stats``: 95% t over seeds, paired differences for comparisons, a direction
only when the interval excludes zero, collapsed variants (loss ≥ ln |V| on any seed, or not finite)
marked and never ranked or compared. Paper numbers come from ``analysis.models.paper``, always
beside ours and never mixed into our intervals.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from analysis.experiments.stats import (
    Interval,
    agreement,
    correlation_interval,
    interval,
    lower_or_not,
    paired,
)
from analysis.importance.metrics import spearman
from analysis.models.paper import AGGREGATION_LOSS, AXES_LOSS

SUMMARIES: dict[str, Callable[[dict], dict]] = {}
NO_BOUND = float("inf")  # the collapse threshold of quantities that are not losses (KL)


def summarizes(name: str):
    def register(fn):
        SUMMARIES[name] = fn
        return fn
    return register


def summarize(doc: dict) -> dict:
    """The summary of one experiment's JSON document."""
    return SUMMARIES[doc["experiment"]](doc)


def _is_collapsed(values: list, threshold: float) -> bool:
    return any(v is None or v >= threshold for v in values)


def _cell(values: list, threshold: float) -> dict:
    """Interval of per-seed values, or the reason there is none."""
    collapsed = _is_collapsed(values, threshold)
    iv = interval(values) if all(v is not None for v in values) else None
    return {"values": values, "interval": iv, "collapsed": collapsed}


def _compare(a: list, b: list, threshold: float, name_a: str, name_b: str) -> dict:
    """Paired loss difference a - b over seeds and its words; collapsed variants are not compared."""
    if _is_collapsed(a, threshold) or _is_collapsed(b, threshold):
        return {"a": name_a, "b": name_b, "diff": None, "words": f"not compared: {name_a} or {name_b} collapsed"}
    diff = paired(a, b)
    return {"a": name_a, "b": name_b, "diff": diff, "words": lower_or_not(diff, name_a, name_b)}


def _versus_paper(diff: Interval | None, paper_a: float, paper_b: float) -> str:
    """Whether our paired difference a - b agrees in sign with the paper's (only if it excludes zero)."""
    if diff is None:
        return "not compared (collapsed)"
    if not diff.excludes_zero:
        return "no measurable difference"
    return "agrees with the paper" if (diff.mean < 0) == (paper_a < paper_b) else "opposite to the paper"


def _ranks(means: dict[str, float]) -> dict[str, int]:
    return {k: r for r, k in enumerate(sorted(means, key=means.get), 1)}


# --- layer drop curves -------------------------------------------------------------------------------------
@summarizes("layer-drop")
def layer_drop(doc: dict) -> dict:
    """Per block size: mean curve, first / last / middle-median costs, and edges vs middle (paired)."""
    seeds = doc["per_seed"]
    sizes = sorted(seeds[0]["deltas"], key=int)
    out = {"sizes": [int(n) for n in sizes], "blocks": {}, "baseline": interval([s["baseline"] for s in seeds]),
           "spearman": correlation_interval([s["spearman_bi_vs_drop_loss"] for s in seeds])}
    for n in sizes:
        curves = [s["deltas"][n] for s in seeds]  # per seed, per start
        mean_curve = [sum(c[i] for c in curves) / len(curves) for i in range(len(curves[0]))]
        middle = [sorted(c[1:-1])[(len(c) - 2) // 2] if len(c) > 2 else c[0] for c in curves]
        first, last = [c[0] for c in curves], [c[-1] for c in curves]
        cheap = min(range(len(mean_curve)), key=mean_curve.__getitem__)
        costly = max(range(len(mean_curve)), key=mean_curve.__getitem__)
        out["blocks"][int(n)] = {
            "mean_curve": mean_curve, "curve": [interval([c[i] for c in curves]) for i in range(len(mean_curve))],
            "first": interval(first), "last": interval(last), "middle": interval(middle),
            "cheapest": (cheap, interval([c[cheap] for c in curves])),
            "costliest": (costly, interval([c[costly] for c in curves])),
            "first_vs_middle": paired(first, middle), "last_vs_middle": paired(last, middle),
        }
    return out


# --- aggregation (Table 11) ---------------------------------------------------------------------------------
def _paper_loss(aggregation: str) -> float:
    b, s = aggregation.split("_")
    return AGGREGATION_LOSS[(b, s)][0]


@summarizes("aggregation")
def aggregation(doc: dict) -> dict:
    """Per target: every aggregation's loss interval and rank, the paper's beside it, rank agreement."""
    threshold, seeds = doc["collapse_threshold"], doc["per_seed"]
    out = {"teacher_loss": interval([s["teacher_loss"] for s in seeds]), "targets": {}}
    for name, target in doc["settings"]["targets"].items():
        aggs = list(seeds[0]["targets"][name]["loss"])
        cells = {a: _cell([s["targets"][name]["loss"][a] for s in seeds], threshold) for a in aggs}
        live = [a for a in aggs if not cells[a]["collapsed"]]
        ranks = _ranks({a: cells[a]["interval"].mean for a in live})
        paper_ranks = _ranks({a: _paper_loss(a) for a in aggs})
        rows = [{"aggregation": a, **cells[a], "rank": ranks.get(a), "paper_loss": _paper_loss(a),
                 "paper_rank": paper_ranks[a]} for a in aggs]
        rows.sort(key=lambda r: r["paper_rank"])
        rho = None
        if len(live) >= 3:
            paper = torch.tensor([_paper_loss(a) for a in live])
            rho = correlation_interval([spearman(torch.tensor([s["targets"][name]["loss"][a] for a in live]), paper)
                                        for s in seeds])
        best_other = min((a for a in live if a != "l2_mean"), key=lambda a: cells[a]["interval"].mean, default=None)
        vs = None if best_other is None else _compare(cells["l2_mean"]["values"], cells[best_other]["values"],
                                                      threshold, "l2_mean", best_other)
        out["targets"][name] = {"target": target, "params": seeds[0]["targets"][name]["params"], "rows": rows,
                                "live": len(live), "spearman": rho,
                                "agreement": agreement(rho) if rho else "too few rows below ln |V| to compare orders",
                                "l2_mean_vs_best_other": vs}
    return out


# --- pruning axes (Table 1) ---------------------------------------------------------------------------------
# The paper's comparisons in Table 1, after distillation: (a, b), the paper finding a's loss lower or not.
AXES_COMPARISONS = (("width (mlp+heads+channels)", "depth (drop loss)"), ("depth (drop loss)", "depth (BI)"),
                    ("width (mlp+heads+channels)", "width (mlp+heads)"), ("width (mlp+heads+channels)", "depth+width"))
# Our own comparisons at the matched share (zero-shot): depth metrics, and the paper's width winner vs depth.
MATCHED_COMPARISONS = (("depth (drop loss)", "depth (BI)"), ("width (mlp+channels)", "depth (drop loss)"),
                       ("mlp", "depth (drop loss)"))


def _variant_rows(doc: dict, group: str, keys: tuple[str, ...]) -> list[dict]:
    threshold, seeds = doc["collapse_threshold"], doc["per_seed"]
    rows = []
    for name, v in doc["settings"]["groups"][group].items():
        row = {"variant": name, "target": v["target"], "axes": v["axes"], "depth_metric": v["depth_metric"]}
        for key in keys:  # ln |V| bounds a loss, not a KL
            row[key] = _cell([s[group][name][key] for s in seeds], threshold if "loss" in key else NO_BOUND)
        rows.append(row)
    return rows


def _values(doc: dict, group: str, name: str, key: str) -> list:
    return [s[group][name][key] for s in doc["per_seed"]]


@summarizes("pruning-axes")
def pruning_axes(doc: dict) -> dict:
    """Both groups' loss intervals, and the paper's comparisons with our paired differences."""
    threshold = doc["collapse_threshold"]
    comparisons = []
    for a, b in AXES_COMPARISONS:
        for key in ("distilled_loss", "zero_shot_loss"):
            c = _compare(_values(doc, "paper", a, key), _values(doc, "paper", b, key), threshold, a, b)
            paper_note = _versus_paper(c["diff"], AXES_LOSS[a], AXES_LOSS[b]) if key == "distilled_loss" else None
            comparisons.append(c | {"key": key, "paper_a": AXES_LOSS[a], "paper_b": AXES_LOSS[b], "versus_paper": paper_note})
    matched = [_compare(_values(doc, "matched", a, "zero_shot_loss"), _values(doc, "matched", b, "zero_shot_loss"),
                        threshold, a, b) for a, b in MATCHED_COMPARISONS]
    return {"teacher_loss": interval([s["teacher_loss"] for s in doc["per_seed"]]),
            "matched": _variant_rows(doc, "matched", ("zero_shot_loss",)),
            "paper": _variant_rows(doc, "paper", ("zero_shot_loss", "distilled_loss", "distilled_kl")),
            "comparisons": comparisons, "matched_comparisons": matched}


# --- distillation vs fine-tuning ------------------------------------------------------------------------------
@summarizes("distill-vs-finetune")
def distill_vs_finetune(doc: dict) -> dict:
    """Loss and KL before/after per mode, and the paired difference distill - finetune after training."""
    seeds, threshold = doc["per_seed"], doc["collapse_threshold"]

    def vals(mode: str, key: str) -> list:
        return [next(r for r in s["rows"] if r["mode"] == mode)[key] for s in seeds]
    rows = [{"mode": m, **{k: _cell(vals(m, k), threshold if "loss" in k else NO_BOUND)
                           for k in ("loss_before", "loss_after", "kl_before", "kl_after")},
             "train_s": interval(vals(m, "train_s"))} for m in ("distill", "finetune")]
    loss = _compare(vals("distill", "loss_after"), vals("finetune", "loss_after"), threshold, "distillation",
                    "fine-tuning")
    kl_diff = paired(vals("distill", "kl_after"), vals("finetune", "kl_after"))
    return {"rows": rows, "teacher_loss": interval([s["teacher_loss"] for s in seeds]),
            "params": seeds[0]["params"], "loss": loss,
            "kl": {"diff": kl_diff, "words": lower_or_not(kl_diff, "distillation", "fine-tuning").replace(
                "is lower than", "ends closer to the teacher than")}}


# --- head residual merging -------------------------------------------------------------------------------------
@summarizes("head-merge")
def head_merge(doc: dict) -> dict:
    """Per heads target and phase: merged and plain losses, and the paired difference merged - plain."""
    seeds, threshold = doc["per_seed"], doc["collapse_threshold"]
    rows = []
    for n in doc["settings"]["heads"]:
        for key, phase in (("zero_shot_loss", "zero-shot"), ("distilled_loss", f"after {doc['settings']['steps']} steps")):
            if key not in seeds[0]["targets"][str(n)]["merged"]:
                continue
            merged = [s["targets"][str(n)]["merged"][key] for s in seeds]
            plain = [s["targets"][str(n)]["plain"][key] for s in seeds]
            rows.append({"heads": n, "phase": phase, "merged": _cell(merged, threshold), "plain": _cell(plain, threshold),
                         "pairs_per_layer": seeds[0]["targets"][str(n)]["pairs_per_layer"],
                         "diff": _compare(merged, plain, threshold, "merged", "not merged")})
    return {"teacher_loss": interval([s["teacher_loss"] for s in seeds]), "rows": rows,
            "teacher_heads": doc["settings"]["teacher_heads"], "kv_heads": doc["settings"]["kv_heads"]}
