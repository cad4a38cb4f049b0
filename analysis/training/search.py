"""Rank search candidates after lightweight retraining, as the paper does (arXiv:2407.14679 §2.3, Best Practice #9).

The paper distills every candidate of its search for ~400 steps (~1.8B tokens) and picks the best by the
loss after that, because the zero-shot order after pruning does not predict the order after training.
``rank_after_retraining`` prunes each candidate (``analysis.pruning.surgery.prune_model``), trains it
with the one training loop (``analysis.training.loop.Trainer``) for ``cfg.steps`` steps, and records
the held-out loss before (zero-shot) and after. ``order_agreement`` says how much the two orders agree:
Spearman's rho and Kendall's tau with percentile-bootstrap intervals over candidates.

Windows (``analysis.data``): held-out = the first ``eval_samples`` permuted windows; training = the
windows after them. The importance scores come from an analysis run's calibration windows; a run whose
calibration shares a token with the ranking's held-out windows is refused (``_check_disjoint``), so
ranking never scores text that selection or training saw.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from analysis.core import validate as V
from analysis.core.errors import MinitronError
from analysis.core.io import finite_or_none
from analysis.core.provenance import now, versions
from analysis.data import DataConfig, shared_tokens
from analysis.importance.metrics import bootstrap_interval, kendall, spearman
from analysis.importance.results import DEFAULT_AGGREGATION, load_run
from analysis.models.adapter import param_count
from analysis.models.configs import from_hf_config
from analysis.models.loading import LoadConfig, load_model
from analysis.models.paper import SEARCH_GRIDS
from analysis.pruning.plan import importance_from_run
from analysis.pruning.search import (
    Candidate,
    candidate_rows,
    check_budget,
    enumerate_candidates,
    no_candidates,
    parse_budget,
    resolve_space,
    space_record,
)
from analysis.pruning.surgery import prune_model
from analysis.training.loop import DistillConfig, Trainer
from analysis.training.pipeline import training_splits


def rank_after_retraining(model, candidates: list[Candidate], importance, train_ids: torch.Tensor,
                          eval_ids: torch.Tensor, cfg: DistillConfig, head_merge: bool = True,
                          log: Callable[[str], None] | None = None) -> list[dict]:
    """One row per candidate: zero-shot and retrained held-out loss (and KL to the teacher), in input order.

    Each student is pruned from ``model`` (left untouched) and distilled for ``cfg.steps`` steps; the
    Trainer evaluates it before the first step (zero-shot) and after the last. Students are discarded.
    """
    rows = []
    for n, c in enumerate(candidates, 1):
        t0 = time.perf_counter()
        student = prune_model(model, c.target(), importance, head_merge=head_merge).model
        trainer = Trainer(model, student, train_ids, eval_ids, cfg)
        trainer.run()
        before, after = trainer.state.evals[0], trainer.state.evals[-1]
        losses = {"zero_shot_loss": before["loss"], "retrained_loss": after["loss"], "zero_shot_kl": before["kl"],
                  "retrained_kl": after["kl"]}
        # a diverged student (NaN or infinite loss) has no loss to rank by: null in search.json, ranked last
        rows.append({"candidate": list(c.key), "params": param_count(student)}
                    | {k: v if math.isfinite(v) else None for k, v in losses.items()}
                    | {"diverged": not all(math.isfinite(v) for v in losses.values()), "train_s": trainer.state.elapsed_s})
        if log:
            log(f"candidate {n}/{len(candidates)} {c.key}: loss {before['loss']:.4f} -> {after['loss']:.4f} "
                f"({time.perf_counter() - t0:.0f} s)")
        del student, trainer
    return rows


def order_agreement(zero_shot: list[float], retrained: list[float], resamples: int = 2000, seed: int = 0) -> dict:
    """How far the zero-shot order predicts the retrained one: rank correlations with 95% bootstrap intervals.

    Also whether the two pick the same best candidate and where the retrained best ranked zero-shot.
    """
    a, b = torch.tensor(zero_shot, dtype=torch.float64), torch.tensor(retrained, dtype=torch.float64)
    n = len(a)
    out = {"candidates": n, "spearman": spearman(a, b), "kendall": kendall(a, b)}
    for name, fn in (("spearman", spearman), ("kendall", kendall)):
        out[f"{name}_ci95"] = list(bootstrap_interval(lambda i, fn=fn: fn(a[i], b[i]), n, resamples, seed=seed))
    zs_rank = torch.argsort(torch.argsort(a, stable=True), stable=True)  # 0-based rank of each candidate zero-shot
    best = int(torch.argmin(b))
    out |= {"same_best": best == int(torch.argmin(a)), "retrained_best_zero_shot_rank": int(zs_rank[best]) + 1,
            "resamples": resamples}
    return out


@dataclass
class SearchJob:
    """One ``search`` command: which teacher and budget, and whether and how to rank."""

    load: LoadConfig = field(default_factory=LoadConfig)  # the teacher (weights only needed to rank)
    params: str = "8B"  # "8B"/"4B" (the paper's problems, scaled to the teacher) or a parameter count
    tolerance: float | None = None  # None: the space's window (8B: the paper's list) or +-5%
    rank: bool = False  # prune, retrain and rank every candidate (needs weights and ``run``)
    run: str | None = None  # analysis run of the teacher (importance)
    aggregation: str = DEFAULT_AGGREGATION
    depth_metric: str = "bi"
    data: DataConfig = field(default_factory=DataConfig)  # text and window seed (seq_len from ``train``)
    train: DistillConfig = field(default_factory=lambda: DistillConfig(steps=0))  # steps 0: zero-shot order
    head_merge: bool = True

    def __post_init__(self):
        if self.params.strip().upper() not in SEARCH_GRIDS:
            parse_budget(self.params)  # a budget that is not a positive count fails before anything loads
        V.TOLERANCE.check("--tolerance", self.tolerance)
        if self.rank and self.run is None:  # before any model is loaded
            raise MinitronError("--rank needs --run DIR (an analysis run of the teacher)")


def _check_disjoint(run_data: dict, meta: dict, run_dir: str) -> None:
    """The ranking's held-out windows must share no token with the windows the importance was computed on."""
    cfg = run_data.get("config", {})
    if run_data.get("source") != meta.get("source") or run_data.get("stream_sha256") != meta.get("stream_sha256"):
        return  # another text: no window in common
    if shared_tokens(run_data.get("calib_windows", []), cfg.get("seq_len", 0), meta["eval_windows"], meta["config"]["seq_len"]):
        raise MinitronError(f"the ranking's {len(meta['eval_windows'])} held-out windows overlap the calibration windows "
                            f"of {run_dir}: selection and evaluation must not share text; rerun analyze with "
                            f"--eval-samples {len(meta['eval_windows'])} and --seq-len {meta['config']['seq_len']} (or more "
                            "held-out windows), or rank with fewer --eval-samples")


def _ranking(job: SearchJob, candidates: list[Candidate], log) -> dict:
    """Load the teacher's weights, cut the windows, rank: the ``ranking`` part of search.json."""
    if job.run is None:
        raise MinitronError("--rank needs --run DIR (an analysis run of the teacher)")
    importance = importance_from_run(load_run(job.run), job.aggregation, job.depth_metric)  # fails before loading
    loaded = load_model(job.load)
    if loaded.tokenizer is None:
        raise MinitronError(f"{job.load.model}: no tokenizer, cannot measure the held-out loss")
    cfg = job.train
    # rank on the SELECTION split (the first windows, as the importance run's held-out ones), never on evaluation
    data = dataclasses.replace(job.data, eval_samples=cfg.eval_samples)
    splits = training_splits(loaded.tokenizer, data, cfg, getattr(loaded.model.config, "max_position_embeddings", None))
    _check_disjoint(load_run(job.run).metrics.get("data", {}), splits.meta, job.run)
    rows = rank_after_retraining(loaded.model, candidates, importance, splits.calib, splits.eval, cfg, job.head_merge, log)
    agreement = None
    pairs = [(r["zero_shot_loss"], r["retrained_loss"]) for r in rows if not r["diverged"]]
    if cfg.steps and len(pairs) > 2:  # over the candidates with a loss on both sides
        # tied losses leave a rank correlation undefined: null, not NaN
        agreement = finite_or_none(order_agreement(*map(list, zip(*pairs, strict=True))))
    return {"retrain": asdict(cfg) if cfg.steps else None, "order_by": "retrained_loss" if cfg.steps else "zero_shot_loss",
            "rows": rows, "agreement": agreement, "importance_run": job.run, "aggregation": job.aggregation,
            "depth_metric": job.depth_metric, "head_merge": job.head_merge, "data": splits.meta,
            "teacher": loaded.provenance}


def run_search(job: SearchJob, log: Callable[[str], None] | None = None) -> dict:
    """Candidates of the paper's space for the teacher and budget, ranked when asked: the search.json document."""
    meta = load_model(dataclasses.replace(job.load, device="meta", random_init=True))
    teacher = from_hf_config(meta.model.config)
    space = resolve_space(teacher, job.params)
    check_budget(teacher, space.budget)
    candidates = enumerate_candidates(teacher, space, job.tolerance)
    if not candidates:  # nothing to list or rank: said with the range the space covers, exit 1
        raise MinitronError(no_candidates(teacher, space, job.tolerance), exit_code=1)
    doc = {"command": "search", "created": now(), "teacher": meta.name, "teacher_architecture": asdict(teacher),
           "params": job.params, "space": space_record(space, job.tolerance),
           "candidates": candidate_rows(candidates, space.budget), "ranking": None, "versions": versions()}
    if job.rank:
        doc["ranking"] = _ranking(dataclasses.replace(job, load=dataclasses.replace(job.load, random_init=False)),
                                  candidates, log)
    return doc
