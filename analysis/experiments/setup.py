"""Sizes and shared inputs of the experiments: one ``Scale`` for CI (seconds), one for the recorded runs.

``prepare`` loads the model, runs (or reuses) its analysis and cuts the training and held-out
windows, so a notebook is a handful of calls. The held-out windows are the analysis run's own
evaluation windows (same source, seq_len, eval_samples and seed), never its calibration windows.

The CI scale does not run on the 135M embedded default itself: an optimizer step over 135M
parameters alone takes seconds on a shared 2-core box, and the pruning-axes notebook trains seven
students. It runs on ``shrunk_model``: the default cut to 6 layers and narrow widths (leading
indices, its real tokenizer), a ~5M-parameter model that exercises every code path in seconds.
Its numbers mean nothing; the recorded results use ``FULL`` on the embedded default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from analysis.data import DataConfig, make_splits, read_stream
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
    """How big one run of the experiments is."""

    name: str  # "small" (CI) or "full" (the README's recorded results)
    calib_samples: int  # calibration windows of the analysis run (importance statistics)
    eval_samples: int  # held-out windows: analysis sensitivity and every experiment's losses
    seq_len: int  # tokens per window
    block_sizes: tuple[int, ...]  # contiguous layer blocks dropped in the analysis (Figure 8 curves)
    steps: int  # optimizer steps of each pruning-axes healing run
    compare_steps: int  # optimizer steps of each run of the distill-vs-finetune comparison
    batch_size: int  # training windows per step
    lr: float  # peak learning rate (cosine to lr/10)
    eval_every: int  # held-out evaluation interval of the distill-vs-finetune curves
    prune_fraction: float  # share of parameters each pruning-axes variant removes
    shrink: PruneTarget | None = None  # run on the model cut to this shape (CI speed; see module docstring)


SMALL = Scale("small", calib_samples=8, eval_samples=2, seq_len=32, block_sizes=(1, 2), steps=2, compare_steps=2,
              batch_size=2, lr=1e-4, eval_every=1, prune_fraction=0.1,
              shrink=PruneTarget(hidden=96, ffn=128, heads=6, layers=6))
# About half an hour of a shared 2-core CPU for all experiments on the embedded default (see README).
FULL = Scale("full", calib_samples=64, eval_samples=8, seq_len=128, block_sizes=(1, 2, 8, 16), steps=20,
             compare_steps=40, batch_size=2, lr=1e-4, eval_every=10, prune_fraction=0.1)


def scale(small: bool) -> Scale:
    return SMALL if small else FULL


def analysis_config(sc: Scale, model: str = DEFAULT_MODEL, source: str = "pydoc") -> AnalysisConfig:
    """The analysis whose importance scores and drop curves the experiments read."""
    data = DataConfig(source=source, seq_len=sc.seq_len, calib_samples=sc.calib_samples, eval_samples=sc.eval_samples)
    return AnalysisConfig(load=LoadConfig(model=model, device="cpu"), data=data, block_sizes=sc.block_sizes)


def distill_config(sc: Scale, steps: int | None = None) -> DistillConfig:
    """Training settings of the healing runs at this scale (the paper's recipe, scaled down)."""
    steps = sc.steps if steps is None else steps
    return DistillConfig(steps=steps, seq_len=sc.seq_len, batch_size=sc.batch_size, lr=sc.lr, min_lr=sc.lr / 10,
                         warmup_steps=max(1, steps // 10), eval_every=sc.eval_every,
                         eval_samples=sc.eval_samples, checkpoint_every=0, device="cpu")


@dataclass
class Setup:
    """Everything the experiments share."""

    loaded: LoadedModel  # the teacher (model + tokenizer)
    run: RunResult  # its analysis run
    train_ids: torch.Tensor  # (N, T) training windows (after the held-out ones)
    eval_ids: torch.Tensor  # (M, T) held-out windows
    cfg: DistillConfig  # training settings of the pruning-axes runs
    compare_cfg: DistillConfig  # training settings of the distill-vs-finetune runs
    scale: Scale


def shrunk_model(model: str, target: PruneTarget, out: Path) -> Path:
    """``model`` cut to ``target`` (leading channels/heads/neurons/layers) as a HF directory; reused if present."""
    if (out / "config.json").exists():
        return out
    lm = load_model(LoadConfig(model=model, device="cpu"))
    return save_model_dir(prune_model(lm.model, target, Importance()).model, out, lm.tokenizer)


def _model_at(sc: Scale, runs: str | Path, model: str) -> str:
    """The model a scale runs on: ``model`` itself, or its shrunk copy under ``runs``."""
    return model if sc.shrink is None else str(shrunk_model(model, sc.shrink, Path(runs) / f"model-{sc.name}"))


def analysis_run(sc: Scale, runs: str | Path, model: str = DEFAULT_MODEL, source: str = "pydoc") -> RunResult:
    """Run or reuse the scale's analysis of ``model`` in ``runs/<scale name>``."""
    acfg = analysis_config(sc, _model_at(sc, runs, model), source)
    return load_run(run_analysis(acfg, out=Path(runs) / sc.name))


def prepare(sc: Scale, runs: str | Path, model: str = DEFAULT_MODEL, source: str = "pydoc") -> Setup:
    """Load ``model`` (shrunk at the CI scale), run or reuse its analysis in ``runs/<scale name>``, cut the windows."""
    run = analysis_run(sc, runs, model, source)
    acfg = analysis_config(sc, _model_at(sc, runs, model), source)
    loaded = load_model(acfg.load)
    cfg, compare_cfg = distill_config(sc), distill_config(sc, sc.compare_steps)
    longest = max((cfg, compare_cfg), key=lambda c: c.steps)  # enough training windows for both
    splits = training_splits(loaded.tokenizer, acfg.data, longest,
                             getattr(loaded.model.config, "max_position_embeddings", None))
    return Setup(loaded, run, splits.calib, splits.eval, cfg, compare_cfg, sc)


def unused_windows(setup: Setup, n: int, source: str = "pydoc") -> torch.Tensor:
    """(n, T) windows that neither selection nor training saw: held-out for studies needing more than ``eval_ids``.

    ``analysis.data`` permutes the windows once per seed: the first eval_samples are held out, the analysis
    calibrates on the next calib_samples and training takes the next steps x batch. The n windows after
    all of those were used by nothing.
    """
    sc, cfg = setup.scale, setup.cfg
    used = sc.eval_samples + max(sc.calib_samples, max(cfg.steps, setup.compare_cfg.steps) * cfg.batch_size * cfg.grad_accum)
    stream, meta = read_stream(setup.loaded.tokenizer, DataConfig(source=source))
    splits = make_splits(stream, DataConfig(source=source, seq_len=sc.seq_len, calib_samples=0, eval_samples=used + n),
                         meta)
    return splits.eval[used:]
