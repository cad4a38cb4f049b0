"""The prune pipeline: load teacher -> importance (run or on the fly) -> plan -> build -> evaluate.

Three disjoint splits (``analysis.data``): the importance analysis (a given run, or one made on the
fly) calibrates on the calibration windows and measures drop-layer losses on the selection windows;
depth by drop loss selects layers with those. Zero-shot perplexity before and after is then the
held-out loss of ``analysis.evaluation.loss`` on the evaluation windows, from the end of the
permutation and kept off every window the analysis used (checked in tokens, recorded as
``splits`` in ``prune_recipe.json``). Writing the result is ``analysis.pruning.export``'s job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from analysis.core.errors import MinitronError
from analysis.data import (
    DataConfig,
    check_context,
    check_disjoint,
    make_splits,
    read_stream,
    record_spans,
    split_record,
    stream_sha256,
)
from analysis.evaluation.loss import heldout
from analysis.importance.pipeline import AnalysisConfig, run_analysis
from analysis.importance.results import DEFAULT_AGGREGATION, load_run
from analysis.models.adapter import DecoderAdapter, param_count
from analysis.models.configs import from_hf_config
from analysis.models.loading import LoadConfig, LoadedModel, load_model
from analysis.pruning import merge
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

PPL_PROTOCOL = ("analysis.data evaluation (test) split, disjoint from the analysis's calibration and selection "
                "windows; independent windows; first token of each window unscored; exp(mean token NLL)")


@dataclass
class PruneConfig:
    """One pruning job."""

    load: LoadConfig = field(default_factory=LoadConfig)  # the teacher
    target: PruneTarget = field(default_factory=PruneTarget)  # explicit sizes (override target_name)
    target_name: str | None = None  # registry model whose shape to take (--target 8B)
    run: str | None = None  # analysis run directory; None: analyse on the fly
    depth_metric: str = "bi"  # "bi" or "drop-loss"
    aggregation: str = DEFAULT_AGGREGATION  # batch_seq aggregation of the importance scores
    # calib/eval: the on-the-fly analysis's calibration and selection windows; test: perplexity
    data: DataConfig = field(default_factory=lambda: DataConfig(test_samples=8))
    evaluate: bool = True  # zero-shot perplexity before and after
    batch_size: int = 8
    head_merge: bool = True  # fold pruned query heads into kept ones (paper §2.3; analysis.pruning.merge)


def merged_target(teacher, cfg: PruneConfig) -> PruneTarget:
    """``--target`` shape, with explicit --hidden/--ffn/--heads/--layers taking precedence."""
    base = target_from_registry(teacher, cfg.target_name) if cfg.target_name else PruneTarget()
    t = cfg.target
    return PruneTarget(**{axis: getattr(base, axis) if getattr(t, axis) is None else getattr(t, axis)
                          for axis in ("hidden", "ffn", "heads", "layers")})


def _importance(cfg: PruneConfig, loaded: LoadedModel, removed: int,
                console=None) -> tuple[Importance, str | None, dict | None]:
    """Scores from ``cfg.run``, from a fresh analysis, or none (random init: leading indices).

    ``removed``: layers the target drops; depth by ``block`` needs the loss of blocks of that size.
    Also returns the analysis's splits (``split_record`` of its calibration and selection windows).
    """
    if cfg.run:
        run = load_run(cfg.run)
    elif loaded.tokenizer is None:
        return Importance(), None, None
    else:
        # block size 1 (drop_layer_loss), plus the removed block's size for --depth-metric block: larger
        # blocks cost extra passes that pruning does not need
        sizes = (1, removed) if cfg.depth_metric == "block" and removed > 1 else (1,)
        data = dataclasses.replace(cfg.data, test_samples=0)  # the evaluation windows stay out of the analysis
        acfg = AnalysisConfig(load=cfg.load, data=data, batch_size=cfg.batch_size, block_sizes=sizes)
        run = load_run(run_analysis(acfg, console=console))
    data = run.metrics.get("data", {})
    used = split_record(data, ("calib", "eval")) if "stream_sha256" in data and "config" in data else None
    return importance_from_run(run, cfg.aggregation, cfg.depth_metric), str(run.path), used


def evaluation_split(tokenizer, cfg: PruneConfig, max_positions: int | None, used: dict | None):
    """The evaluation windows of ``cfg.data``, kept off the analysis's windows ``used`` (same text).

    Returns (token ids (N, T), the ``splits`` record of prune_recipe.json).
    """
    check_context(cfg.data.seq_len, max_positions)
    stream, source = read_stream(tokenizer, cfg.data)
    same_text = used is not None and used["stream_sha256"] == stream_sha256(stream)
    taken = {role: record_spans(used, role) if same_text else [] for role in ("calibration", "selection")}
    splits = make_splits(stream, cfg.data, source, exclude=tuple(taken["calibration"] + taken["selection"]))
    test = split_record(splits.meta, ("test",))
    if same_text:
        check_disjoint(taken | {"evaluation": record_spans(test, "evaluation")})
        note = "checked in tokens: no evaluation window shares a token with the analysis's calibration or selection"
    else:
        note = "the analysis read another text (token stream differs)" if used else "no importance analysis"
    return splits.test, test | {"importance": used, "disjoint": note}


def recipe(loaded_name: str, teacher_params: int, params: int, target: PruneTarget, cfg: PruneConfig,
           run: str | None, ppl: tuple[float | None, float | None], scored: bool, teacher_weights=None) -> dict:
    """The prune_recipe.json document (keys in analysis.pruning.export.RECIPE_KEYS, plus the protocol)."""
    return {
        "teacher": loaded_name, "teacher_params": teacher_params, "params": params,
        "target": target.to_json(), "depth_metric": cfg.depth_metric if scored else "none",
        "aggregation": cfg.aggregation if scored else "none", "ppl_before": ppl[0], "ppl_after": ppl[1],
        "importance_run": run, "ppl_protocol": PPL_PROTOCOL if ppl[0] is not None else None,
        "ppl_data": {"source": cfg.data.source, "seq_len": cfg.data.seq_len,
                     "eval_samples": cfg.data.test_samples, "seed": cfg.data.seed},
        "teacher_weights": teacher_weights,  # how the teacher's weights were stored (a quantized GGUF)
    }


def prune(cfg: PruneConfig, console=None):
    """Prune the teacher of ``cfg``; returns (pruned model, tokenizer, recipe dict)."""
    if cfg.evaluate and cfg.data.test_samples < 1:
        raise MinitronError("perplexity needs at least one evaluation window (--eval-samples), or pass --no-eval")
    loaded = load_model(cfg.load)
    teacher = DecoderAdapter(loaded.model).arch
    target = merged_target(teacher, cfg)
    student = check_exportable(resolve_target(teacher, target))  # fail before the (possibly long) analysis
    check_prunes(teacher, student)
    imp, run, used = _importance(cfg, loaded, teacher.layers - student.layers, console)
    pruned = prune_model(loaded.model, target, imp, head_merge=cfg.head_merge)
    ppl, splits = (None, None), {"importance": used}
    if cfg.evaluate and loaded.tokenizer is not None:
        ids, splits = evaluation_split(loaded.tokenizer, cfg, teacher.max_positions, used)
        ppl = tuple(heldout(m, ids, cfg.batch_size).perplexity for m in (loaded.model, pruned.model))
    doc = recipe(loaded.name, param_count(loaded.model), param_count(pruned.model), target, cfg, run, ppl,
                 scored=run is not None, teacher_weights=loaded.provenance.get("source_format"))
    doc["kept_layers"] = pruned.plan.layers  # which teacher layers survive: the depth decision, auditable
    doc["splits"] = splits
    removed = sorted(set(range(teacher.layers)) - set(pruned.plan.layers))
    if cfg.depth_metric == "block" and removed:
        doc["removed_block"] = [removed[0], removed[-1]]  # first and last teacher layer of the contiguous block
    doc["head_merge"] = merge.describe(cfg.head_merge, pruned.plan.head_merge, pruned.plan.merge_note)
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
    doc |= {"dry_run": True, "note": "shapes only; which layers/channels/heads survive needs importance",
            "head_merge": merge.describe(cfg.head_merge, None, "dry run: pairing heads needs head importance")}
    return config, doc

