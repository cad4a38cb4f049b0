"""Sizes and shared inputs of the experiments: one ``Scale`` for CI (seconds), one for the recorded runs.

``prepare(sc, runs, seed)`` loads the model, runs (or reuses) its analysis for that seed and cuts
the windows, so an experiment is a handful of calls per seed. Each seed draws its own windows
(``analysis.data``: one seeded permutation, three disjoint splits) and its own training order:

  * calibration: the analysis's importance statistics;
  * selection: the analysis's held-out windows, where drop-one-layer losses rank layers;
  * evaluation: the last windows of the permutation; every loss an experiment reports;
  * training: the windows after the selection split (the calibration windows first), never evaluation.

The CI scale does not run on the 135M embedded default itself: an optimizer step over 135M
parameters alone takes seconds on a shared 2-core box. It runs on ``shrunk_model``: the default
cut to 6 layers and narrow widths (leading indices, its real tokenizer), a ~5M-parameter model
that exercises every code path in seconds. Its numbers mean nothing; the recorded results use
``FULL`` on the embedded default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from analysis.core.errors import MinitronError
from analysis.data import DataConfig, check_disjoint, record_spans, split_record
from analysis.importance.pipeline import AnalysisConfig, run_analysis
from analysis.importance.results import RunResult, load_run
from analysis.models.loading import LoadConfig, LoadedModel, load_model
from analysis.models.registry import DEFAULT_MODEL
from analysis.models.saving import save_model_dir
from analysis.pruning.plan import Importance, PruneTarget
from analysis.pruning.surgery import prune_model
from analysis.training.loop import DistillConfig
from analysis.training.pipeline import training_splits


@dataclass(frozen=True)
class Scale:
    """How big one run of the experiments is (per seed)."""

    name: str  # "small" (CI) or "full" (the README's recorded results)
    calib_samples: int  # calibration windows of the analysis run (importance statistics)
    select_samples: int  # selection windows: the analysis's drop-block losses (depth by drop loss ranks on them)
    test_samples: int  # evaluation windows: every loss an experiment reports
    seq_len: int  # tokens per window
    block_sizes: tuple[int, ...]  # contiguous layer blocks dropped in the analysis (Figure 8 curves)
    steps: int  # optimizer steps of each pruning-axes healing run
    compare_steps: int  # optimizer steps of each run of the distill-vs-finetune comparison
    batch_size: int  # training windows per step
    lr: float  # peak learning rate (cosine to lr/10)
    eval_every: int  # held-out evaluation interval of the distill-vs-finetune curves
    prune_fraction: float  # share of parameters each matched pruning-axes variant removes
    seeds: int = 3  # independent window draws (and training orders) per experiment
    shrink: PruneTarget | None = None  # run on the model cut to this shape (CI speed; see module docstring)

    def to_json(self) -> dict:
        return asdict(self)


SMALL = Scale("small", calib_samples=8, select_samples=2, test_samples=3, seq_len=32, block_sizes=(1, 2), steps=2,
              compare_steps=2, batch_size=2, lr=1e-4, eval_every=1, prune_fraction=0.1,
              shrink=PruneTarget(hidden=96, ffn=128, heads=6, layers=6))
# Sized so that every experiment over 3 seeds finishes within an hour of a 2-core CPU (estimate and
# measured times in the README; ``python cli.py experiment all --estimate`` prints the estimate).
FULL = Scale("full", calib_samples=64, select_samples=8, test_samples=10, seq_len=128, block_sizes=(1, 2, 8, 16),
             steps=16, compare_steps=30, batch_size=2, lr=1e-4, eval_every=15, prune_fraction=0.1)


def scale(small: bool) -> Scale:
    return SMALL if small else FULL


def analysis_config(sc: Scale, model: str = DEFAULT_MODEL, source: str = "pydoc", seed: int = 0) -> AnalysisConfig:
    """The analysis whose importance scores and drop curves the experiments read (no evaluation windows)."""
    data = DataConfig(source=source, seq_len=sc.seq_len, calib_samples=sc.calib_samples,
                      eval_samples=sc.select_samples, seed=seed)
    return AnalysisConfig(load=LoadConfig(model=model, device="cpu"), data=data, block_sizes=sc.block_sizes)


def distill_config(sc: Scale, steps: int | None = None, seed: int = 0, eval_every: int | None = None) -> DistillConfig:
    """Training settings of the healing runs at this scale (the paper's recipe, scaled down)."""
    steps = sc.steps if steps is None else steps
    return DistillConfig(steps=steps, seq_len=sc.seq_len, batch_size=sc.batch_size, lr=sc.lr, min_lr=sc.lr / 10,
                         warmup_steps=max(1, steps // 10), eval_every=sc.eval_every if eval_every is None else eval_every,
                         eval_samples=sc.test_samples, checkpoint_every=0, seed=seed, device="cpu")


@dataclass
class Setup:
    """Everything the experiments of one seed share."""

    loaded: LoadedModel  # the teacher (model + tokenizer)
    run: RunResult  # its analysis run (calibration + selection windows of this seed)
    train_ids: torch.Tensor  # (N, T) training windows (after the selection split)
    test_ids: torch.Tensor  # (M, T) evaluation windows (the end of the permutation)
    splits: dict  # window indices and hashes of all four roles (``analysis.data.split_record``)
    cfg: DistillConfig  # training settings of the pruning-axes runs (before/after evaluation only)
    compare_cfg: DistillConfig  # training settings of the distill-vs-finetune runs
    scale: Scale
    seed: int


def shrunk_model(model: str, target: PruneTarget, out: Path) -> Path:
    """``model`` cut to ``target`` (leading channels/heads/neurons/layers) as a HF directory; reused if present."""
    if (out / "config.json").exists():
        return out
    lm = load_model(LoadConfig(model=model, device="cpu"))
    return save_model_dir(prune_model(lm.model, target, Importance()).model, out, lm.tokenizer)


def model_at(sc: Scale, runs: str | Path, model: str = DEFAULT_MODEL) -> str:
    """The model a scale runs on: ``model`` itself, or its shrunk copy under ``runs``."""
    return model if sc.shrink is None else str(shrunk_model(model, sc.shrink, Path(runs) / f"model-{sc.name}"))


def analysis_run(sc: Scale, runs: str | Path, model: str = DEFAULT_MODEL, source: str = "pydoc",
                 seed: int = 0, console=None) -> RunResult:
    """Run or reuse the scale's analysis of ``model`` for ``seed`` in ``runs/<scale>-seed<k>``."""
    acfg = analysis_config(sc, model_at(sc, runs, model), source, seed)
    return load_run(run_analysis(acfg, out=Path(runs) / f"{sc.name}-seed{seed}", console=console))


def seed_splits(run: RunResult, train_meta: dict) -> dict:
    """The four roles' windows of one seed, checked disjoint in tokens where they must be."""
    if train_meta["stream_sha256"] != run.metrics["data"]["stream_sha256"]:
        raise MinitronError("the analysis run and the training windows were cut from different texts")
    record = split_record(run.metrics["data"], ("calib", "eval")) | split_record(
        train_meta, {"calib": "training", "test": "evaluation"})
    spans = {role: record_spans(record, role) for role in ("calibration", "selection", "evaluation", "training")}
    check_disjoint({k: spans[k] for k in ("calibration", "selection", "evaluation")})
    check_disjoint({k: spans[k] for k in ("training", "selection", "evaluation")})
    return record


def prepare(sc: Scale, runs: str | Path, seed: int = 0, model: str = DEFAULT_MODEL, source: str = "pydoc",
            loaded: LoadedModel | None = None) -> Setup:
    """Load ``model`` (shrunk at the CI scale), run or reuse its analysis for ``seed``, cut the windows."""
    run = analysis_run(sc, runs, model, source, seed)
    acfg = analysis_config(sc, model_at(sc, runs, model), source, seed)
    loaded = loaded or load_model(acfg.load)
    cfg = distill_config(sc, seed=seed, eval_every=0)
    compare_cfg = distill_config(sc, sc.compare_steps, seed=seed)
    longest = max((cfg, compare_cfg), key=lambda c: c.steps)  # enough training windows for both
    splits = training_splits(loaded.tokenizer, replace(acfg.data, calib_samples=0), longest,
                             getattr(loaded.model.config, "max_position_embeddings", None))
    return Setup(loaded, run, splits.calib, splits.test, seed_splits(run, splits.meta), cfg, compare_cfg, sc, seed)
