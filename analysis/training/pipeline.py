"""The distill pipeline: load teacher and student -> windows -> train (resumable) -> export a model directory.

Data protocol (``analysis.data``): one token stream cut into non-overlapping ``seq_len`` windows,
permuted with the data seed. The held-out windows are the evaluation split (the last
``eval_samples`` of the permutation, kept off the windows the student's pruning analysis used, as
its ``prune_recipe.json`` records them); training takes the windows after the selection split, as
many as the run consumes. Training and held-out windows never meet; ``distill.json`` records both.

On disk, ``out_dir`` holds ``checkpoint/`` (resumable, ``analysis.training.checkpoint``),
``model/`` (a plain Hugging Face directory) and ``distill.json`` (config, history, held-out
metrics, provenance; also copied into the model directory). ``out_dir`` follows the output
contract (``analysis.core.io``): checked before the models load, claimed with the marker before
the first step, and every file written is recorded in it. Checkpoints come every
``checkpoint_every`` steps and at least every ``checkpoint_interval_s`` seconds of training, and
at once when the user presses Ctrl-C (``analysis.core.interrupt``); the command then stops with
the way to resume.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from analysis.core import validate as V
from analysis.core.errors import Interrupted, MinitronError
from analysis.core.interrupt import StopRequest, deferred_interrupt
from analysis.core.io import check_output, claim, read_json, record, write_json
from analysis.core.provenance import versions
from analysis.data import (
    DataConfig,
    Splits,
    check_context,
    check_disjoint,
    make_splits,
    read_stream,
    record_spans,
    split_record,
    stream_sha256,
    window_spans,
)
from analysis.models.loading import LoadConfig, load_model, model_name
from analysis.models.saving import Finalize, save_model_dir
from analysis.pruning.export import RECIPE
from analysis.training.checkpoint import CHECKPOINT, has_checkpoint, load_checkpoint, save_checkpoint
from analysis.training.loop import DistillConfig, Trainer, TrainState, check_compatible, due

RESULT = "distill.json"
MODEL_DIR = "model"
# Fields that change the training trajectory: a resumed run must match the checkpoint on these.
TRAJECTORY_FIELDS = ("steps", "batch_size", "grad_accum", "lr", "min_lr", "warmup_steps", "weight_decay",
                     "kd_weight", "clm_weight", "temperature", "max_grad_norm", "seed")


@dataclass
class DistillResult:
    out_dir: Path
    model_dir: Path | None  # None when the run stopped early (stop_after)
    history: list[dict]  # per optimizer step: step, lr, loss, kd, clm, grad_norm
    evals: list[dict]  # held-out: step, loss, ppl, kl, teacher_loss, tokens
    final: dict = field(default_factory=dict)  # before/after held-out metrics
    finished: bool = True


def training_splits(tokenizer, data_cfg: DataConfig, cfg: DistillConfig, max_positions: int | None = None,
                    avoid: dict | None = None) -> Splits:
    """Training (``calib``) and held-out (``test``) windows under the ``analysis.data`` protocol.

    Held-out = the evaluation split: the last ``cfg.eval_samples`` permuted windows, skipping any
    that meet the windows of ``avoid`` (a ``split_record`` of the analysis that pruned the student,
    when it cut the same token stream). Training = the windows after the ``data_cfg.eval_samples``
    selection windows (which it skips), as many as the run consumes (steps × batch × accumulation),
    capped by what the text holds between the selection and evaluation splits.
    """
    check_context(cfg.seq_len, max_positions)
    stream, meta = read_stream(tokenizer, data_cfg)
    free = len(stream) // cfg.seq_len - data_cfg.eval_samples - cfg.eval_samples
    wanted = cfg.steps * cfg.batch_size * cfg.grad_accum
    data_cfg = replace(data_cfg, seq_len=cfg.seq_len, test_samples=cfg.eval_samples,
                       calib_samples=max(1, min(wanted, free)))
    exclude = _held_out_of(avoid, stream_sha256(stream))
    splits = make_splits(stream, data_cfg, meta, exclude)
    test = window_spans(splits.meta, "test")
    check_disjoint({"training": window_spans(splits.meta, "calib"), "evaluation": test})
    check_disjoint({"evaluation": test, "pruning analysis": list(exclude)})
    return splits


def pruning_windows(student_dir: str | Path) -> dict | None:
    """The importance analysis's splits a pruned student was made with (its ``prune_recipe.json``), if any."""
    path = Path(student_dir) / RECIPE
    doc = read_json(path, "pruning recipe") if path.is_file() else None  # a damaged recipe is named, not skipped
    splits = doc.get("splits") if isinstance(doc, dict) else None
    return splits.get("importance") if isinstance(splits, dict) else None


def _held_out_of(used: dict | None, stream_hash: str) -> tuple[tuple[int, int], ...]:
    """Token spans of the pruning analysis's windows when it cut this very token stream."""
    if not used or used.get("stream_sha256") != stream_hash:
        return ()
    return tuple(s for role in ("calibration", "selection") for s in record_spans(used, role))


def _data_hash(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _resume(trainer: Trainer, out_dir: Path, resume: bool, data: str) -> None:
    """Load the checkpoint into ``trainer`` when resuming (its config and data must match)."""
    if has_checkpoint(out_dir) and not resume:
        raise MinitronError(f"{out_dir} already holds a training checkpoint; pass --resume to continue it "
                            "or choose another --out")
    saved = load_checkpoint(out_dir, trainer.student, trainer.opt, trainer.sched, trainer.device) if resume else None
    if saved is None:
        return
    if saved.get("data") != data:
        raise MinitronError(f"cannot resume {out_dir}: the training or held-out windows differ from the "
                            "checkpoint's (same --data, --seq-len, --eval-samples and --data-seed needed)")
    changed = [k for k in TRAJECTORY_FIELDS if saved["config"].get(k) != getattr(trainer.cfg, k)]
    if changed:
        was = ", ".join(f"{k}={saved['config'].get(k)}" for k in changed)
        raise MinitronError(f"cannot resume {out_dir}: {', '.join(changed)} differ from the checkpoint's ({was})")
    trainer.state = TrainState(**{k: saved[k] for k in ("step", "history", "evals", "elapsed_s")})


class Checkpointer:
    """The ``after_step`` hook of the disk pipeline: checkpoint when due (every ``cfg.checkpoint_every``
    steps, at the last step, and at least every ``interval_s`` seconds), at once on Ctrl-C or
    ``stop_after``; returns True to stop. Saving never takes more than ~10% of the time: the interval
    grows to ten times the last save's duration when saving is slow (a large model)."""

    def __init__(self, out_dir: Path, cfg: DistillConfig, data: str, stop_after: int | None = None,
                 interval_s: float = 30.0):
        self.out_dir, self.cfg, self.data, self.stop_after = out_dir, cfg, data, stop_after
        self.interval_s, self.last, self.saved_step = interval_s, time.monotonic(), None
        self.stop = StopRequest()

    def __call__(self, t: Trainer) -> bool:
        step = t.state.step
        stop = self.stop.requested or step == self.stop_after
        if due(step, self.cfg.checkpoint_every, self.cfg) or stop or time.monotonic() - self.last >= self.interval_s:
            t0 = time.monotonic()
            save_checkpoint(self.out_dir, t.student, t.opt, t.sched,
                            asdict(t.state) | {"config": asdict(self.cfg), "data": self.data})
            record(self.out_dir, [CHECKPOINT])
            self.last, self.saved_step = time.monotonic(), step
            self.interval_s = max(self.interval_s, 10 * (self.last - t0))
        return stop


def distill(teacher, student, train_ids: torch.Tensor, eval_ids: torch.Tensor, cfg: DistillConfig,
            out_dir: str | Path, *, resume: bool = False, progress: bool = True, tokenizer=None,
            meta: dict | None = None, carry: tuple[Path, ...] = (), stop_after: int | None = None,
            finalize: Finalize | None = None) -> DistillResult:
    """Train ``student`` toward ``teacher`` on ``train_ids`` (N, T); evaluate on ``eval_ids`` (M, T).

    Writes ``out_dir/checkpoint``, ``out_dir/model`` and ``out_dir/distill.json`` (module docstring);
    ``meta`` (provenance) goes into distill.json; ``carry`` files (the student's ``prune_recipe.json``)
    are copied into the model directory; ``finalize`` runs on the staged model directory (the card).
    ``resume`` without a checkpoint starts afresh. ``stop_after=k`` checkpoints after step k and
    returns unfinished, as an interruption would.
    """
    out_dir = Path(out_dir)
    trainer = Trainer(teacher, student, train_ids, eval_ids, cfg)
    data = _data_hash(train_ids, trainer.eval_ids)
    _resume(trainer, out_dir, resume, data)
    claim(out_dir, "distill")  # ours from the first checkpoint on: --resume and check_output recognise it
    checkpointer = Checkpointer(out_dir, cfg, data, stop_after)
    with deferred_interrupt("training step") as checkpointer.stop:
        finished = trainer.run(after_step=checkpointer, progress=progress)
    if not finished:
        st = trainer.state
        return DistillResult(out_dir, None, st.history, st.evals, finished=False)
    doc = trainer.record() | {"versions": versions()} | (meta or {})
    if generation := getattr(student, "generation_config", None) or getattr(teacher, "generation_config", None):
        student.generation_config = generation
    model_dir = save_model_dir(student, out_dir / MODEL_DIR, tokenizer, documents={RESULT: doc}, files=carry,
                               finalize=finalize, command="distill")
    write_json(out_dir / RESULT, doc)
    record(out_dir, [MODEL_DIR, RESULT])
    return DistillResult(out_dir, model_dir, trainer.state.history, trainer.state.evals, doc["final"])


@dataclass
class DistillJob:
    """One ``distill`` command: which models, which text, how to train, where to write."""

    student: LoadConfig  # the model to train (loaded in float32)
    teacher: LoadConfig  # the model to match
    data: DataConfig  # text source and window seed (``--data-seed``)
    train: DistillConfig  # the training recipe
    out: Path | None = None  # output directory (None: runs/distill/<student>-<mode>)
    resume: bool = False  # continue the checkpoint in ``out``
    force: bool = False  # write into a directory minitron-lab did not make (only our files are replaced)

    def __post_init__(self):
        # the recipe may evaluate without training (search ranks zero-shot with 0 steps); a distill run trains
        V.STEPS.check("--steps", self.train.steps)

    def out_dir(self) -> Path:
        return Path(self.out or f"runs/distill/{model_name(self.student.model)}-{self.train.mode}")


def run_distill(job: DistillJob, console=None, finalize: Finalize | None = None) -> DistillResult:
    """Load both models, cut the windows, train and export; the ``distill`` command's whole pipeline.

    The output directory is checked before anything is loaded; Ctrl-C saves a checkpoint and raises
    ``Interrupted`` with the way to resume.
    """
    out_dir = job.out_dir()
    check_output(out_dir, job.force)
    t = load_model(job.teacher)
    s = load_model(job.student)
    check_compatible(t.model, s.model, (t.tokenizer, s.tokenizer))
    tokenizer = t.tokenizer or s.tokenizer
    if tokenizer is None:
        raise MinitronError("neither teacher nor student directory has a tokenizer; the data cannot be tokenized")
    cfg = job.train
    max_positions = getattr(s.model.config, "max_position_embeddings", None)
    used = pruning_windows(job.student.model)
    splits = training_splits(tokenizer, job.data, cfg, max_positions, avoid=used)
    windows = split_record(splits.meta, {"calib": "training", "eval": "selection", "test": "evaluation"})
    if console:
        console.print(f"{cfg.mode}: {s.name} ({s.provenance['params'] / 1e6:.1f}M) from {t.name} "
                      f"({t.provenance['params'] / 1e6:.1f}M), {splits.calib.shape[0]} training windows -> {out_dir}",
                      markup=False, highlight=False)
    recipe = Path(job.student.model) / RECIPE  # written by `prune`; the card reads it
    result = distill(t.model, s.model, splits.calib, splits.test, cfg, out_dir, resume=job.resume,
                     tokenizer=tokenizer, meta={"teacher": t.provenance, "student": s.provenance, "data": splits.meta,
                                                "splits": windows | {"pruning_analysis": used}},
                     carry=(recipe,) if recipe.is_file() else (), finalize=finalize)
    if not result.finished:
        raise Interrupted(f"interrupted after step {len(result.history)} of {cfg.steps}; checkpoint saved in "
                          f"{out_dir / CHECKPOINT}; rerun the same command with --resume to continue")
    return result
