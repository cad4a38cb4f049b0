"""The prune pipeline: load teacher -> importance (run or on the fly) -> plan -> build -> evaluate.

Zero-shot perplexity before and after: the held-out loss of ``analysis.evaluation.loss`` on the
evaluation split of ``analysis.data`` (disjoint from calibration). Writing the result is
``analysis.pruning.export``'s job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from analysis.data import DataConfig, build_splits
from analysis.evaluation.loss import heldout
from analysis.importance.pipeline import AnalysisConfig, run_analysis
from analysis.importance.results import DEFAULT_AGGREGATION, load_run
from analysis.models.adapter import DecoderAdapter, param_count
from analysis.models.configs import from_hf_config
from analysis.models.loading import LoadConfig, LoadedModel, load_model
from analysis.pruning.plan import (
    Importance,
    PruneTarget,
    check_exportable,
    check_prunes,
    importance_from_run,
    resolve_target,
    target_from_registry,
)
from analysis.pruning.surgery import prune_model, pruned_config

PPL_PROTOCOL = ("analysis.data eval split; independent windows; first token of each window unscored; "
                "exp(mean token NLL)")


@dataclass
class PruneConfig:
    """One pruning job."""

    load: LoadConfig = field(default_factory=LoadConfig)  # the teacher
    target: PruneTarget = field(default_factory=PruneTarget)  # explicit sizes (override target_name)
    target_name: str | None = None  # registry model whose shape to take (--target 8B)
    run: str | None = None  # analysis run directory; None: analyse on the fly
    depth_metric: str = "bi"  # "bi" or "drop-loss"
    aggregation: str = DEFAULT_AGGREGATION  # batch_seq aggregation of the importance scores
    data: DataConfig = field(default_factory=DataConfig)  # on-the-fly analysis and perplexity
    evaluate: bool = True  # zero-shot perplexity before and after
    batch_size: int = 8


def merged_target(teacher, cfg: PruneConfig) -> PruneTarget:
    """``--target`` shape, with explicit --hidden/--ffn/--heads/--layers taking precedence."""
    base = target_from_registry(teacher, cfg.target_name) if cfg.target_name else PruneTarget()
    t = cfg.target
    return PruneTarget(**{axis: getattr(base, axis) if getattr(t, axis) is None else getattr(t, axis)
                          for axis in ("hidden", "ffn", "heads", "layers")})


def _importance(cfg: PruneConfig, loaded: LoadedModel, console=None) -> tuple[Importance, str | None]:
    """Scores from ``cfg.run``, from a fresh analysis, or none (random init: leading indices)."""
    if cfg.run:
        return importance_from_run(load_run(cfg.run), cfg.aggregation, cfg.depth_metric), str(cfg.run)
    if loaded.tokenizer is None:
        return Importance(), None
    # block size 1 only: drop_layer_loss is all pruning needs, larger blocks cost extra passes
    acfg = AnalysisConfig(load=cfg.load, data=cfg.data, batch_size=cfg.batch_size, block_sizes=(1,))
    run_dir = run_analysis(acfg, console=console)
    return importance_from_run(load_run(run_dir), cfg.aggregation, cfg.depth_metric), str(run_dir)


def recipe(loaded_name: str, teacher_params: int, params: int, target: PruneTarget, cfg: PruneConfig,
           run: str | None, ppl: tuple[float | None, float | None], scored: bool, teacher_weights=None) -> dict:
    """The prune_recipe.json document (keys in analysis.pruning.export.RECIPE_KEYS, plus the protocol)."""
    return {
        "teacher": loaded_name, "teacher_params": teacher_params, "params": params,
        "target": target.to_json(), "depth_metric": cfg.depth_metric if scored else "none",
        "aggregation": cfg.aggregation if scored else "none", "ppl_before": ppl[0], "ppl_after": ppl[1],
        "importance_run": run, "ppl_protocol": PPL_PROTOCOL if ppl[0] is not None else None,
        "ppl_data": {"source": cfg.data.source, "seq_len": cfg.data.seq_len,
                     "eval_samples": cfg.data.eval_samples, "seed": cfg.data.seed},
        "teacher_weights": teacher_weights,  # how the teacher's weights were stored (a quantized GGUF)
    }


def prune(cfg: PruneConfig, console=None):
    """Prune the teacher of ``cfg``; returns (pruned model, tokenizer, recipe dict)."""
    loaded = load_model(cfg.load)
    teacher = DecoderAdapter(loaded.model).arch
    target = merged_target(teacher, cfg)
    check_prunes(teacher, check_exportable(resolve_target(teacher, target)))  # before the (long) analysis
    imp, run = _importance(cfg, loaded, console)
    pruned = prune_model(loaded.model, target, imp)
    ppl = (None, None)
    if cfg.evaluate and loaded.tokenizer is not None:
        ids = build_splits(loaded.tokenizer, cfg.data, teacher.max_positions).eval
        ppl = tuple(heldout(m, ids, cfg.batch_size).perplexity for m in (loaded.model, pruned.model))
    doc = recipe(loaded.name, param_count(loaded.model), param_count(pruned.model), target, cfg, run, ppl,
                 scored=run is not None, teacher_weights=loaded.provenance.get("source_format"))
    doc["kept_layers"] = pruned.plan.layers  # which teacher layers survive: the depth decision, auditable
    return pruned.model, loaded.tokenizer, doc


def dry_run(cfg: PruneConfig):
    """Shapes only: (student HF config, recipe dict), from the registry or a config; no weights."""
    meta = load_model(dataclasses.replace(cfg.load, device="meta", random_init=True))
    teacher = from_hf_config(meta.model.config)
    target = merged_target(teacher, cfg)
    student = check_exportable(resolve_target(teacher, target))
    check_prunes(teacher, student)
    config = pruned_config(meta.model.config, student, list(range(student.layers)))
    params = from_hf_config(config).params()["total"]
    doc = recipe(meta.name, teacher.params()["total"], params, target, cfg, None, (None, None), False)
    doc |= {"dry_run": True, "note": "shapes only; which layers/channels/heads survive needs importance"}
    return config, doc

