"""Small-scale reproductions of the Minitron paper's experiments, each returning plain data.

Every function returns a dict with ``rows`` (a list of flat dicts, one per measured variant) and the
context needed to read them; ``figures.experiments`` draws them and the notebooks display them.
Sizes come from the caller (``analysis.experiments.setup.Scale``), so CI runs the same code in
seconds that the recorded results ran in minutes.

Losses are mean next-token NLL in nats/token on held-out windows: tokens 1..T-1 of each window,
scored from their in-window prefix (``analysis.evaluation.loss``, which training's evaluation uses
too). Parameter counts are of the built models (``param_count``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, replace

import torch

from analysis.evaluation.loss import heldout, heldout_windows
from analysis.importance.metrics import bootstrap_interval, spearman
from analysis.importance.results import AGGREGATIONS, DEFAULT_AGGREGATION
from analysis.models.adapter import DecoderAdapter, param_count
from analysis.models.paper import AGGREGATION_LOSS
from analysis.models.registry import Architecture
from analysis.pruning import surgery
from analysis.pruning.plan import PruneTarget, importance_from_run
from analysis.training.loop import DistillConfig, Trainer

# Pruning axis -> Architecture field, in the order a combined target shrinks them.
AXIS_FIELDS = {"depth": "layers", "heads": "heads", "channels": "hidden", "mlp": "mlp"}

# Variants of the pruning-axes study (paper Tables 1 and 13): name -> (axes pruned, depth metric).
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


# --- building blocks ----------------------------------------------------------------------------
def prune_model(model: torch.nn.Module, run, target: PruneTarget, aggregation: str = DEFAULT_AGGREGATION,
                depth_metric: str = "bi") -> torch.nn.Module:
    """A pruned copy of ``model`` ranked by the run's ``aggregation`` scores (``model`` is untouched)."""
    return surgery.prune_model(model, target, importance_from_run(run, aggregation, depth_metric)).model


def fraction_target(teacher: Architecture, hidden: float = 1.0, mlp: float = 1.0, heads: float = 1.0) -> PruneTarget:
    """Keep these fractions of each width; heads round to a multiple of the kv groups (GQA)."""
    kv = teacher.kv_heads
    n_heads = max(kv, round(teacher.heads * heads / kv) * kv)
    return PruneTarget(hidden=max(1, round(teacher.hidden * hidden)), ffn=max(1, round(teacher.mlp * mlp)),
                       heads=n_heads, layers=None)


def paper_target(teacher: Architecture, name: str = "8B") -> PruneTarget:
    """The width ratios of Minitron ``name`` over Nemotron-4 15B, applied to ``teacher`` (no depth pruning)."""
    from analysis.models.paper import width_targets

    f = width_targets()[name]
    return fraction_target(teacher, hidden=f["hidden"], mlp=f["mlp"], heads=f["heads"])


def _shrink(arch: Architecture, axis: str, goal: float, total: int) -> Architecture:
    """``arch`` with one axis set so the parameters removed from ``total`` are closest to ``goal``."""
    name = AXIS_FIELDS[axis]
    step = arch.kv_heads if axis == "heads" else 1  # every GQA group keeps the same number of heads
    sizes = range(step, getattr(arch, name) + 1, step)
    best = min(sizes, key=lambda n: abs(total - arch.replace(**{name: n}).params()["total"] - goal))
    return arch.replace(**{name: best})


def matched_target(teacher: Architecture, axes: tuple[str, ...], fraction: float) -> PruneTarget:
    """A target removing ~``fraction`` of the teacher's parameters, shared equally by ``axes``.

    Axes shrink in ``AXIS_FIELDS`` order; each aims at its cumulative share of the budget, so the
    last one absorbs the rounding of the others (heads move in steps of a whole head per group).
    """
    total = teacher.params()["total"]
    ordered = [a for a in AXIS_FIELDS if a in axes]
    arch = teacher
    for i, axis in enumerate(ordered):
        arch = _shrink(arch, axis, fraction * total * (i + 1) / len(ordered), total)
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


# --- the experiments ----------------------------------------------------------------------------
def aggregation_study(model, run, target: PruneTarget, eval_ids: torch.Tensor, batch_size: int = 8) -> dict:
    """Zero-shot loss after pruning with each of the nine batch x sequence aggregations (paper Table 11).

    Only the ranking of heads, neurons and channels changes between rows; the target shape (and so
    the parameter count) is the same. Rows carry the paper's losses (Nemotron-4 15B -> 8B shape,
    8T blend / WikiText2) beside ours; ``spearman_vs_paper`` compares the two orderings.
    """
    rows = []
    for b in AGGREGATIONS:
        for s in AGGREGATIONS:
            pruned = prune_model(model, run, target, aggregation=f"{b}_{s}")
            paper = AGGREGATION_LOSS[(b, s)]
            rows.append({"aggregation": f"{b}_{s}", "batch": b, "seq": s, "loss": heldout(pruned, eval_ids, batch_size).loss,
                         "params": param_count(pruned), "paper_loss_8t": paper[0], "paper_loss_wikitext": paper[1]})
            del pruned
    for key, rank_key in (("loss", "rank"), ("paper_loss_8t", "paper_rank")):
        for r, row in enumerate(sorted(rows, key=lambda x: x[key]), 1):
            row[rank_key] = r
    ours, paper = (torch.tensor([row[k] for row in rows]) for k in ("loss", "paper_loss_8t"))
    return {"rows": rows, "teacher_loss": heldout(model, eval_ids, batch_size).loss, "target": target.to_json(),
            "teacher_params": param_count(model), "eval_tokens": eval_ids.shape[0] * (eval_ids.shape[1] - 1),
            "spearman_vs_paper": spearman(ours, paper)}


def pruning_axes(model, run, eval_ids: torch.Tensor, train_ids: torch.Tensor | None, cfg: DistillConfig,
                 fraction: float = 0.1, variants: tuple[str, ...] | None = None, batch_size: int = 8) -> dict:
    """Zero-shot and after-distillation loss per pruning axis at matched parameter counts (Tables 1, 13).

    Each variant in ``AXIS_VARIANTS`` removes ~``fraction`` of the parameters along its axes
    (``matched_target``); depth ranks layers by Block Importance or by drop-one-layer loss. Every
    pruned student is then distilled from ``model`` with ``cfg`` (skipped when ``train_ids`` is None).
    """
    teacher = DecoderAdapter(model).arch
    rows = []
    for name in variants or tuple(AXIS_VARIANTS):
        axes, depth_metric = AXIS_VARIANTS[name]
        target = matched_target(teacher, axes, fraction)
        student = prune_model(model, run, target, depth_metric=depth_metric)
        row = {"variant": name, "axes": "+".join(axes), "depth_metric": depth_metric if "depth" in axes else None,
               **target.to_json(), "params": param_count(student)}
        if train_ids is None:
            row["zero_shot_loss"] = heldout(student, eval_ids[: cfg.eval_samples], batch_size).loss
        else:
            res = train_in_memory(model, student, train_ids, eval_ids, cfg)
            row |= {"zero_shot_loss": res["before"]["loss"], "distilled_loss": res["after"]["loss"],
                    "zero_shot_kl": res["before"]["kl"], "distilled_kl": res["after"]["kl"], "train_s": res["train_s"]}
        rows.append(row)
        del student
    return {"rows": rows, "fraction": fraction, "teacher_params": param_count(model),
            "teacher_loss": heldout(model, eval_ids[: cfg.eval_samples], batch_size).loss,
            "train": None if train_ids is None else asdict(cfg)}


def distill_vs_finetune(teacher, student, train_ids: torch.Tensor, eval_ids: torch.Tensor, cfg: DistillConfig) -> dict:
    """The same pruned ``student`` trained for the same steps on the same windows, two ways.

    ``distill``: forward KL(teacher || student) on logits (the paper's recipe); ``finetune``: plain
    next-token cross-entropy on the data. Both start from copies of ``student`` (left untouched).
    Rows: held-out loss and KL to the teacher before and after; ``curves``: every evaluation.
    """
    runs = {}
    for mode, mode_cfg in (("distill", replace(cfg, kd_weight=1.0, clm_weight=0.0)), ("finetune", cfg.finetune())):
        runs[mode] = train_in_memory(teacher, copy.deepcopy(student), train_ids, eval_ids, mode_cfg)
    rows = [{"mode": mode, "steps": cfg.steps, "loss_before": r["before"]["loss"], "loss_after": r["after"]["loss"],
             "kl_before": r["before"]["kl"], "kl_after": r["after"]["kl"], "train_s": r["train_s"]}
            for mode, r in runs.items()]
    return {"rows": rows, "curves": {m: r["evals"] for m, r in runs.items()},
            "history": {m: r["history"] for m, r in runs.items()},
            "teacher_loss": runs["distill"]["before"]["teacher_loss"], "params": param_count(student),
            "config": asdict(cfg)}


def _paired(merged: torch.Tensor, plain: torch.Tensor, label: str, heads: int, resamples: int) -> dict:
    """Mean held-out loss of both students and their paired difference with a 95% bootstrap over windows."""
    diff = merged - plain
    lo, hi = bootstrap_interval(lambda i: float(diff[i].mean()), len(diff), resamples)
    return {"heads": heads, "phase": label, "merged_loss": float(merged.mean()), "plain_loss": float(plain.mean()),
            "diff": float(diff.mean()), "ci95": [lo, hi], "windows": len(diff),
            "direction": "merged better" if hi < 0 else "merged worse" if lo > 0 else "no direction (interval spans 0)"}


def head_merge_study(model, run, eval_ids: torch.Tensor, train_ids: torch.Tensor | None, cfg: DistillConfig,
                     keep: tuple[float, ...] = (2 / 3, 1 / 3), seeds: tuple[int, ...] = (0,),
                     resamples: int = 2000) -> dict:
    """Head residual merging (paper §2.3, ``analysis.pruning.merge``) on vs off, heads-only pruning.

    For each share of heads kept (rounded to whole heads per GQA group), the same importance prunes two
    students, with and without merging. Both are scored on the same held-out windows, zero-shot and after
    ``cfg.steps`` distillation steps (one run per training seed, identical batches for both); rows give
    the paired difference merged - plain with a 95% percentile bootstrap over windows. Negative = merging helps.
    """
    teacher = DecoderAdapter(model).arch
    targets = sorted({fraction_target(teacher, heads=f).heads for f in keep} - {teacher.heads}, reverse=True)
    imp = importance_from_run(run, DEFAULT_AGGREGATION, "bi")
    rows = []
    for heads in targets:
        students = {m: surgery.prune_model(model, PruneTarget(heads=heads), imp, head_merge=m) for m in (True, False)}
        zero = {m: heldout_windows(p.model, eval_ids) for m, p in students.items()}
        rows.append(_paired(zero[True], zero[False], "zero-shot", heads, resamples)
                    | {"pairs_per_layer": len(students[True].plan.head_merge[students[True].plan.layers[0]])})
        for seed in seeds if train_ids is not None else ():
            after = {}
            for m, p in students.items():
                trainer = Trainer(model, copy.deepcopy(p.model), train_ids, eval_ids, replace(cfg, seed=seed))
                trainer.run()
                after[m] = heldout_windows(trainer.student.eval(), eval_ids)
            rows.append(_paired(after[True], after[False], f"after {cfg.steps} steps (seed {seed})", heads, resamples))
    return {"rows": rows, "teacher_heads": teacher.heads, "kv_heads": teacher.kv_heads,
            "teacher_loss": float(heldout_windows(model, eval_ids).mean()), "eval_windows": list(eval_ids.shape),
            "train": None if train_ids is None else asdict(cfg), "seeds": list(seeds)}


def layer_drop_curves(run) -> dict:
    """Held-out loss with n contiguous layers removed, at every start position (arXiv:2408.11796 Fig. 8).

    Read from the run's ``drop_block_loss.n<k>`` tensors; ``delta`` is the increase over the full
    model's loss. One row per (n, start).
    """
    base = run.metrics.get("eval", {}).get("loss")
    sizes = sorted(int(k.split(".n")[1]) for k in run.tensors if k.startswith("drop_block_loss.n"))
    rows = [{"n": n, "start": s, "end": s + n - 1, "loss": float(v),
             "delta": None if base is None else float(v) - base}
            for n in sizes for s, v in enumerate(run.tensors[f"drop_block_loss.n{n}"].tolist())]
    layers = len(run.tensors["block_importance"]) if "block_importance" in run.tensors else None
    summary = [_drop_summary([r for r in rows if r["n"] == n], n) for n in sizes] if base is not None else []
    return {"rows": rows, "baseline": base, "sizes": sizes, "num_layers": layers, "model": run.model_name,
            "summary": summary}


def _drop_summary(rows: list[dict], n: int) -> dict:
    """Where dropping n layers costs least and most; edges vs middle (the follow-up paper's observation)."""
    cheap, costly = min(rows, key=lambda r: r["delta"]), max(rows, key=lambda r: r["delta"])
    middle = sorted(r["delta"] for r in rows[1:-1]) or [float("nan")]
    return {"n": n, "cheapest_start": cheap["start"], "cheapest_delta": cheap["delta"],
            "costliest_start": costly["start"], "costliest_delta": costly["delta"],
            "first_delta": rows[0]["delta"], "last_delta": rows[-1]["delta"],
            "middle_median_delta": middle[len(middle) // 2]}
