"""Small-scale reproductions of the Minitron paper's experiments, one seed each, returning plain data.

Every function returns a dict with ``rows`` (a list of flat dicts, one per measured variant) and the
context needed to read them; ``analysis.experiments.runner`` repeats them over seeds and
``analysis.experiments.summary`` turns the seeds into intervals. Sizes come from the caller
(``analysis.experiments.setup.Scale``), so CI runs the same code in seconds that the recorded
results run in minutes.

Losses are mean next-token NLL in nats/token on the EVALUATION windows (``test_ids``, the end of
the seed's permutation): tokens 1..T-1 of each window, scored from their in-window prefix
(``analysis.evaluation.loss``, which training's evaluation uses too). Importance comes from the
calibration windows and depth by drop loss ranks layers on the selection windows (the analysis
run's), so nothing selected is scored on the windows it was selected with. ``tick(units)``, when
given, is called after each row with that row's estimated cost (``analysis.experiments.cost``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace

import torch

from analysis.evaluation.loss import heldout
from analysis.experiments import cost
from analysis.importance.metrics import spearman
from analysis.importance.results import AGGREGATIONS, DEFAULT_AGGREGATION
from analysis.models.adapter import DecoderAdapter, param_count
from analysis.models.paper import width_targets
from analysis.models.registry import Architecture
from analysis.pruning import surgery
from analysis.pruning.plan import PruneTarget, importance_from_run
from analysis.training.loop import DistillConfig, Trainer

Tick = Callable[[float], None]

# Pruning axis -> Architecture field, in the order a combined target shrinks them.
AXIS_FIELDS = {"depth": "layers", "heads": "heads", "channels": "hidden", "mlp": "mlp"}

# Variants of the pruning-axes study at a matched share of parameters (``matched_target``), zero-shot:
# name -> (axes pruned, depth metric). Our own single-axis map; the paper's comparison is PAPER_AXES.
AXIS_VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "heads": (("heads",), "bi"),
    "mlp": (("mlp",), "bi"),
    "channels": (("channels",), "bi"),
    "depth (BI)": (("depth",), "bi"),
    "depth (drop loss)": (("depth",), "drop-loss"),
    "width (mlp+channels)": (("channels", "mlp"), "bi"),  # Minitron 8B's recipe: every head kept
    "width (heads+mlp+channels)": (("heads", "channels", "mlp"), "bi"),
    "depth+width": (("depth", "heads", "channels", "mlp"), "bi"),
}

# The paper's pruning-axes comparison (Table 1; ``analysis.models.paper.AXES_LOSS``) at its own shapes,
# applied to the teacher: name -> (axes pruned, depth metric, shape rule). "study": the widths of the
# study target (Nemotron-3 8B over Nemotron-4 15B); "half depth": half the layers (the paper's depth-only
# model keeps 16 of 32); "matched": these axes, removing as many parameters as the study shape does, with
# heads (when pruned) at the study target's share and the other axes sharing the rest equally.
PAPER_AXES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "width (mlp+heads+channels)": (("heads", "channels", "mlp"), "bi", "study"),
    "width (mlp+heads)": (("heads", "mlp"), "bi", "matched"),
    "depth+width": (("depth", "heads", "channels", "mlp"), "bi", "matched"),
    "depth (drop loss)": (("depth",), "drop-loss", "half depth"),
    "depth (BI)": (("depth",), "bi", "half depth"),
}

# Width targets of the aggregation study: our name -> ``analysis.models.paper.width_targets`` key.
AGGREGATION_TARGETS = {"minitron-8b": "8B", "study (nemotron-3 8b)": "study", "minitron-4b": "4B"}


# --- building blocks ----------------------------------------------------------------------------
def prune_model(model: torch.nn.Module, run, target: PruneTarget, aggregation: str = DEFAULT_AGGREGATION,
                depth_metric: str = "bi") -> torch.nn.Module:
    """A pruned copy of ``model`` ranked by the run's ``aggregation`` scores (``model`` is untouched)."""
    return surgery.prune_model(model, target, importance_from_run(run, aggregation, depth_metric)).model


def fraction_target(teacher: Architecture, hidden: float = 1.0, mlp: float = 1.0, heads: float = 1.0) -> PruneTarget:
    """Keep these fractions of each width; heads round to the nearest multiple of the kv groups (GQA).

    Every group keeps the same number of query heads, so heads move in steps of ``kv_heads``:
    n = max(kv, kv · round(heads_teacher · fraction / kv)) (Python's round: halves to even).
    """
    kv = teacher.kv_heads
    n_heads = max(kv, round(teacher.heads * heads / kv) * kv)
    return PruneTarget(hidden=max(1, round(teacher.hidden * hidden)), ffn=max(1, round(teacher.mlp * mlp)),
                       heads=n_heads, layers=None)


def paper_target(teacher: Architecture, name: str = "8B") -> PruneTarget:
    """The width ratios of ``name`` over Nemotron-4 15B (``8B``, ``4B``, ``study``) applied to ``teacher``.

    No depth pruning (every one keeps all 32 layers). On the embedded default (9 heads in 3 groups)
    the study target's 32/48 gives exactly 6 heads, 2 per group; Minitron 4B's 24/48 gives 4.5,
    rounded to 6.
    """
    f = width_targets()[name]
    return fraction_target(teacher, hidden=f["hidden"], mlp=f["mlp"], heads=f["heads"])


def _shrink(arch: Architecture, axis: str, goal: float, total: int) -> Architecture:
    """``arch`` with one axis set so the parameters removed from ``total`` are closest to ``goal``."""
    name = AXIS_FIELDS[axis]
    step = arch.kv_heads if axis == "heads" else 1  # every GQA group keeps the same number of heads
    sizes = range(step, getattr(arch, name) + 1, step)
    best = min(sizes, key=lambda n: abs(total - arch.replace(**{name: n}).params()["total"] - goal))
    return arch.replace(**{name: best})


def matched_target(teacher: Architecture, axes: tuple[str, ...], fraction: float,
                   start: Architecture | None = None) -> PruneTarget:
    """A target removing ~``fraction`` of the teacher's parameters, shared equally by ``axes``.

    Axes shrink in ``AXIS_FIELDS`` order; each aims at its cumulative share of the budget, so the
    last one absorbs the rounding of the others (heads move in steps of a whole head per group).
    ``start``: an already pruned shape of the teacher; ``axes`` share what it leaves of the budget.
    """
    total = teacher.params()["total"]
    arch = start or teacher
    done = total - arch.params()["total"]
    ordered = [a for a in AXIS_FIELDS if a in axes]
    for i, axis in enumerate(ordered):
        arch = _shrink(arch, axis, done + (fraction * total - done) * (i + 1) / len(ordered), total)
    return PruneTarget(hidden=arch.hidden, ffn=arch.mlp, heads=arch.heads, layers=arch.layers)


def train_in_memory(teacher, student, train_ids: torch.Tensor, eval_ids: torch.Tensor, cfg: DistillConfig) -> dict:
    """The training loop without checkpoints or export: held-out metrics before/after, history.

    Experiments compare many short runs; writing a 0.5 GB model and optimizer state per run would
    cost more than the training. Evaluates every ``cfg.eval_every`` steps (0: before and after only).
    """
    trainer = Trainer(teacher, student, train_ids, eval_ids, cfg)
    trainer.run()
    student.eval()
    st = trainer.state
    return {"mode": cfg.mode, "before": st.evals[0], "after": st.evals[-1], "evals": st.evals, "history": st.history,
            "train_s": st.elapsed_s}


# --- the experiments (one seed each) --------------------------------------------------------------
def _tick(tick: Tick | None, units: float) -> None:
    if tick is not None:
        tick(units)


def aggregation_study(model, run, target: PruneTarget, test_ids: torch.Tensor, batch_size: int = 8,
                      tick: Tick | None = None) -> dict:
    """Zero-shot loss after pruning with each of the nine batch x sequence aggregations (paper Table 11).

    Only the ranking of heads, neurons and channels changes between rows; the target shape (and so
    the parameter count) is the same. ``spearman`` compares our ordering with the paper's
    (``analysis.experiments.summary`` does so over seeds, without collapsed rows).
    """
    teacher = DecoderAdapter(model).arch
    rows, params = [], None
    for b in AGGREGATIONS:
        for s in AGGREGATIONS:
            pruned = prune_model(model, run, target, aggregation=f"{b}_{s}")
            params = param_count(pruned)
            rows.append({"aggregation": f"{b}_{s}", "loss": heldout(pruned, test_ids, batch_size).loss})
            _tick(tick, cost.heldout(params / teacher.params()["total"], len(test_ids)))
            del pruned
    return {"rows": rows, "params": params, "target": target.to_json()}


def axes_targets(teacher: Architecture, group: str, fraction: float = 0.1) -> dict[str, dict]:
    """The shapes of a pruning-axes group: ``matched`` (``AXIS_VARIANTS``) or ``paper`` (``PAPER_AXES``).

    Returns name -> {"axes", "depth_metric", "target"}; the same for every seed.
    """
    if group == "matched":
        return {name: {"axes": list(axes), "depth_metric": metric, "target": matched_target(teacher, axes, fraction)}
                for name, (axes, metric) in AXIS_VARIANTS.items()}
    study = paper_target(teacher, "study")
    study_arch = teacher.replace(hidden=study.hidden, mlp=study.ffn, heads=study.heads)
    removed = 1 - study_arch.params()["total"] / teacher.params()["total"]
    out = {}
    for name, (axes, metric, rule) in PAPER_AXES.items():
        if rule == "study":
            target = replace(study, layers=teacher.layers)
        elif rule == "half depth":
            target = PruneTarget(hidden=teacher.hidden, ffn=teacher.mlp, heads=teacher.heads, layers=teacher.layers // 2)
        else:  # heads at the study target's share; the other axes share the rest of the budget equally
            start = teacher.replace(heads=study.heads) if "heads" in axes else teacher
            target = matched_target(teacher, tuple(a for a in axes if a != "heads"), removed, start)
        out[name] = {"axes": list(axes), "depth_metric": metric, "target": target}
    return out


def pruning_axes(model, run, test_ids: torch.Tensor, train_ids: torch.Tensor | None, cfg: DistillConfig,
                 variants: dict[str, dict], batch_size: int = 8, tick: Tick | None = None) -> dict:
    """Zero-shot (and, with ``train_ids``, after-distillation) loss per pruning variant (paper Table 1).

    ``variants``: ``axes_targets`` output. Depth ranks layers by Block Importance or by the drop-one-
    layer loss of the selection windows. Every pruned student is distilled from ``model`` with ``cfg``
    (evaluated before and after on ``test_ids``) unless ``train_ids`` is None.
    """
    teacher = DecoderAdapter(model).arch
    rows = []
    for name, v in variants.items():
        student = prune_model(model, run, v["target"], depth_metric=v["depth_metric"])
        p = param_count(student) / teacher.params()["total"]
        row = {"variant": name}
        if train_ids is None:
            row["zero_shot_loss"] = heldout(student, test_ids, batch_size).loss
            _tick(tick, cost.heldout(p, len(test_ids)))
        else:
            res = train_in_memory(model, student, train_ids, test_ids, cfg)
            row |= {"zero_shot_loss": res["before"]["loss"], "distilled_loss": res["after"]["loss"],
                    "zero_shot_kl": res["before"]["kl"], "distilled_kl": res["after"]["kl"], "train_s": res["train_s"]}
            _tick(tick, cost.train(p, cfg.steps, cfg.batch_size) + 2 * cost.heldout_pair(p, len(test_ids)))
        rows.append(row)
        del student
    return {"rows": rows}


def distill_vs_finetune(teacher, student, train_ids: torch.Tensor, test_ids: torch.Tensor, cfg: DistillConfig,
                        tick: Tick | None = None) -> dict:
    """The same pruned ``student`` trained for the same steps on the same windows, two ways.

    ``distill``: forward KL(teacher || student) on logits (the paper's recipe); ``finetune``: plain
    next-token cross-entropy on the data. Both start from copies of ``student`` (left untouched).
    Rows: held-out loss and KL to the teacher before and after; ``curves``: every evaluation.
    """
    p = param_count(student) / param_count(teacher)
    evals = 1 + cfg.steps // cfg.eval_every if cfg.eval_every else 2
    runs = {}
    for mode, mode_cfg in (("distill", replace(cfg, kd_weight=1.0, clm_weight=0.0)), ("finetune", cfg.finetune())):
        runs[mode] = train_in_memory(teacher, copy.deepcopy(student), train_ids, test_ids, mode_cfg)
        _tick(tick, cost.train(p, cfg.steps, cfg.batch_size, kd=mode == "distill")
              + evals * cost.heldout_pair(p, len(test_ids)))
    rows = [{"mode": mode, "loss_before": r["before"]["loss"], "loss_after": r["after"]["loss"],
             "kl_before": r["before"]["kl"], "kl_after": r["after"]["kl"], "train_s": r["train_s"]}
            for mode, r in runs.items()]
    curves = {m: [{k: e[k] for k in ("step", "loss", "kl")} for e in r["evals"]] for m, r in runs.items()}
    return {"rows": rows, "curves": curves, "teacher_loss": runs["distill"]["before"]["teacher_loss"],
            "params": param_count(student)}


def head_merge(model, run, test_ids: torch.Tensor, train_ids: torch.Tensor | None, cfg: DistillConfig,
               heads: list[int], batch_size: int = 8, tick: Tick | None = None) -> dict:
    """Head residual merging (paper §2.3, ``analysis.pruning.merge``) on vs off, heads-only pruning, one seed.

    For each number of kept heads, the same importance prunes two students, with and without merging;
    both are scored on ``test_ids`` zero-shot and, with ``train_ids``, after ``cfg.steps`` distillation
    steps on identical batches. The summary pairs merged and plain per seed (``summary.head_merge``).
    """
    teacher = DecoderAdapter(model).arch
    imp = importance_from_run(run, DEFAULT_AGGREGATION, "bi")
    out = {"teacher_loss": heldout(model, test_ids, batch_size).loss, "targets": {}}
    for n in heads:
        row = {}
        for merged in (True, False):
            student = surgery.prune_model(model, PruneTarget(heads=n), imp, head_merge=merged)
            p = param_count(student.model) / teacher.params()["total"]
            key = "merged" if merged else "plain"
            if train_ids is None:
                row[key] = {"zero_shot_loss": heldout(student.model, test_ids, batch_size).loss}
                _tick(tick, cost.heldout(p, len(test_ids)))
            else:
                res = train_in_memory(model, student.model, train_ids, test_ids, cfg)
                row[key] = {"zero_shot_loss": res["before"]["loss"], "distilled_loss": res["after"]["loss"]}
                _tick(tick, cost.train(p, cfg.steps, cfg.batch_size) + 2 * cost.heldout_pair(p, len(test_ids)))
            if merged:
                row["pairs_per_layer"] = len(student.plan.head_merge[student.plan.layers[0]])
            del student
        out["targets"][str(n)] = row
    return out


def layer_drop_curves(run) -> dict:
    """Loss increase with n contiguous layers removed, at every start (arXiv:2408.11796 Fig. 8), one seed.

    Read from the analysis run: ``drop_block_loss.n<k>`` minus the full model's loss, both on the
    run's selection windows (this experiment selects nothing, it describes), and the Spearman
    correlation between Block Importance (calibration windows) and the drop-one-layer loss.
    """
    base = run.metrics["eval"]["loss"]
    sizes = sorted(int(k.split(".n")[1]) for k in run.tensors if k.startswith("drop_block_loss.n"))
    deltas = {str(n): [float(v) - base for v in run.tensors[f"drop_block_loss.n{n}"].tolist()] for n in sizes}
    rho = spearman(run.tensors["block_importance"], run.tensors["drop_layer_loss"])
    return {"baseline": base, "deltas": deltas, "spearman_bi_vs_drop_loss": rho}
