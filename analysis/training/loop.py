"""The one training loop: logit distillation (and plain CLM fine-tuning) of a student from its teacher.

Minitron retrains pruned models with forward KL(teacher || student) on the logits, temperature 1,
over the full vocabulary (no top-k), and the final models use that loss alone; ``DistillConfig``
defaults to exactly that. ``kd_weight=0, clm_weight=1`` (``DistillConfig.finetune``) is plain
next-token fine-tuning through the same loop, so the two compare at equal steps and data.

Training cycles through the training windows in a fresh seeded order each epoch; the order is a
pure function of (seed, step), which is what makes resumption exact. ``Trainer.run`` calls
``after_step(trainer)`` after every optimizer step: the disk pipeline (``analysis.training.pipeline``)
checkpoints there; experiments pass nothing and keep everything in memory.

Held-out metrics (``analysis.evaluation.loss.heldout_pair``): the student's next-token loss and
perplexity, the teacher's loss on the same tokens, and KL(teacher || student) over all T positions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch

from analysis.core import validate as V
from analysis.core.errors import MinitronError
from analysis.evaluation.loss import clm_loss, forward_kl, heldout_pair
from analysis.models.loading import check_device, resolve_device, resolve_dtype

PROTOCOL = ("train = windows of analysis.data after the selection split, seeded order per epoch; "
            "held-out = the evaluation split (last eval_samples permuted windows, never trained on); loss over "
            "T-1 targets per window (stride = seq_len, first token unscored), ppl = exp(loss); "
            "KL(teacher||student) over all T positions, temperature 1")


@dataclass
class DistillConfig:
    """How the student is trained; defaults follow the paper's retraining recipe, scaled down."""

    steps: int = 100  # optimizer steps (0: evaluate only, the zero-shot point; `distill` needs at least 1)
    seq_len: int = 256  # tokens per training and evaluation window
    batch_size: int = 4  # windows per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch = batch_size * grad_accum)
    lr: float = 1e-4  # peak learning rate, reached at the end of warmup (the paper's retraining: 2e-4)
    min_lr: float = 1e-5  # floor of the cosine decay, reached at the last step (the paper's: 4.5e-7)
    warmup_steps: int = 10  # linear warmup from lr/warmup_steps to lr
    weight_decay: float = 0.1  # AdamW decay on matrices only; norms and biases are not decayed
    max_grad_norm: float = 1.0  # gradient clipping (0 disables): early KD gradients of a pruned model spike
    kd_weight: float = 1.0  # weight of KL(teacher || student) on logits
    clm_weight: float = 0.0  # weight of next-token cross-entropy on the data (the paper's final models: 0)
    temperature: float = 1.0  # softmax temperature of both distributions in the KL (paper: 1)
    eval_every: int = 20  # held-out evaluation every N steps (0: only before and after training)
    eval_samples: int = 8  # held-out windows: the evaluation split (the last of the permutation)
    checkpoint_every: int = 50  # resumable checkpoint every N steps (0: only at the end)
    kl_chunk: int = 1024  # tokens per chunk of the vocabulary-wide KL, to bound float32 memory
    seed: int = 0  # order of training windows each epoch
    device: str = "auto"  # auto (cuda if present), cpu, cuda, cuda:N
    dtype: str = "auto"  # compute dtype: auto = bf16 autocast on CUDA, float32 on CPU (weights stay float32)

    def __post_init__(self):
        V.check_fields(self, {
            "steps": ("--steps", V.TRAIN_STEPS), "seq_len": ("--seq-len", V.SEQ_LEN), "batch_size": ("--batch-size", V.BATCH),
            "grad_accum": ("--grad-accum", V.ACCUM), "lr": ("--lr", V.LR), "min_lr": ("--min-lr", V.MIN_LR),
            "warmup_steps": ("--warmup", V.WARMUP), "weight_decay": ("weight_decay", V.WEIGHT_DECAY),
            "max_grad_norm": ("max_grad_norm", V.GRAD_NORM), "kd_weight": ("--kd-weight", V.LOSS_WEIGHT),
            "clm_weight": ("--clm-weight", V.LOSS_WEIGHT), "temperature": ("temperature", V.TEMPERATURE),
            "eval_every": ("--eval-every", V.EVERY), "eval_samples": ("--eval-samples", V.SAMPLES),
            "checkpoint_every": ("--checkpoint-every", V.EVERY), "kl_chunk": ("kl_chunk", V.BATCH),
            "seed": ("--seed", V.SEED)})
        if self.min_lr > self.lr:
            raise MinitronError(f"--min-lr {self.min_lr:g} is above --lr {self.lr:g}: the cosine decays from --lr "
                                "down to --min-lr")
        if self.kd_weight == 0 and self.clm_weight == 0:
            raise MinitronError("--kd-weight and --clm-weight are both 0: there would be no loss to train on")
        check_device(self.device, compute=True)

    def finetune(self) -> DistillConfig:
        """The same recipe as plain CLM fine-tuning (no teacher in the loss)."""
        return replace(self, kd_weight=0.0, clm_weight=1.0)

    @property
    def mode(self) -> str:
        return "finetune" if self.kd_weight == 0 else ("distill" if self.clm_weight == 0 else "distill+clm")


@dataclass
class TrainState:
    """Where training stands; everything a checkpoint needs besides weights, optimizer and RNG."""

    step: int = 0  # optimizer steps done
    history: list[dict] = field(default_factory=list)  # per step: step, lr, loss, kd, clm, grad_norm
    evals: list[dict] = field(default_factory=list)  # held-out: step, loss, ppl, kl, teacher_loss, tokens
    elapsed_s: float = 0.0  # training wall time so far (resumed runs add up)


# --- schedule and optimizer ----------------------------------------------------------------------
def lr_at(step: int, cfg: DistillConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine to min_lr.

        step < W:  lr · (step + 1) / W
        else:      min_lr + ½ (lr − min_lr) (1 + cos(π · min(1, (step − W) / max(1, S − 1 − W))))
    so the first step is not wasted at lr 0 and the last step (S − 1) runs at min_lr.
    """
    w = cfg.warmup_steps
    if step < w:
        return cfg.lr * (step + 1) / w
    progress = min(1.0, (step - w) / max(1, cfg.steps - 1 - w))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(student: torch.nn.Module, cfg: DistillConfig):
    """AdamW (decay on ≥2-D tensors only) and a LambdaLR that follows ``lr_at``."""
    params = [p for p in student.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg) / cfg.lr if cfg.lr else 0.0)
    return opt, sched


def batch_indices(step: int, micro: int, n: int, cfg: DistillConfig) -> torch.Tensor:
    """Training-window indices of one micro-batch: a pure function of (seed, step, micro).

    Windows are consumed in a seeded permutation per epoch, so a resumed run sees exactly the
    batches the uninterrupted run would have.
    """
    start = (step * cfg.grad_accum + micro) * cfg.batch_size
    pos = torch.arange(start, start + cfg.batch_size)
    epochs, within = pos // n, pos % n
    out = torch.empty_like(pos)
    for e in epochs.unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + e))
        out[epochs == e] = perm[within[epochs == e]]
    return out


# --- evaluation and one step --------------------------------------------------------------------
def autocast(device: torch.device, cfg: DistillConfig):
    """bf16 autocast on CUDA (weights stay float32), nothing on CPU; float16 is refused."""
    dtype = resolve_dtype(cfg.dtype, device)
    if dtype == torch.float16:
        raise MinitronError("float16 training needs loss scaling, which is not implemented; use bfloat16")
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


@torch.no_grad()
def evaluate(student, teacher, ids: torch.Tensor, cfg: DistillConfig, device: torch.device) -> dict:
    """Held-out student loss/perplexity, teacher loss and KL(teacher || student) (module docstring)."""
    was_training = student.training
    student.eval()
    with autocast(device, cfg):
        out = heldout_pair(student, teacher, ids, cfg.batch_size)
    student.train(was_training)
    return out


def _micro_loss(student, teacher, batch, cfg: DistillConfig) -> tuple[torch.Tensor, float, float]:
    """Weighted loss of one micro-batch and its KD and CLM parts (for the history)."""
    s = student(batch, use_cache=False).logits  # (B, T, V)
    kd = clm = s.new_zeros(())
    if cfg.kd_weight:
        with torch.no_grad():
            t = teacher(batch, use_cache=False).logits  # (B, T, V)
        kd = forward_kl(s, t, temperature=cfg.temperature, chunk=cfg.kl_chunk)
    if cfg.clm_weight:
        clm = clm_loss(s, batch)
    return cfg.kd_weight * kd + cfg.clm_weight * clm, kd.item(), clm.item()


def train_step(step, student, teacher, train_ids, opt, sched, cfg, device) -> dict:
    """One optimizer step over ``grad_accum`` micro-batches; returns its history row."""
    opt.zero_grad(set_to_none=True)
    loss = kd = clm = 0.0
    for micro in range(cfg.grad_accum):
        batch = train_ids[batch_indices(step, micro, train_ids.shape[0], cfg)].to(device)
        with autocast(device, cfg):
            part, kd_i, clm_i = _micro_loss(student, teacher, batch, cfg)
        (part / cfg.grad_accum).backward()  # equal-size windows: mean of means is the batch mean
        loss, kd, clm = loss + part.item() / cfg.grad_accum, kd + kd_i / cfg.grad_accum, clm + clm_i / cfg.grad_accum
    norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm or float("inf"))
    lr = opt.param_groups[0]["lr"]
    opt.step()
    sched.step()
    return {"step": step + 1, "lr": lr, "loss": loss, "kd": kd, "clm": clm, "grad_norm": float(norm)}


def check_compatible(teacher, student, tokenizers=()) -> None:
    """Teacher and student must share a vocabulary (and tokenizer, when both are known), not weights."""
    if {p.data_ptr() for p in teacher.parameters()} & {p.data_ptr() for p in student.parameters()}:
        raise MinitronError("student shares parameters with the teacher: training would change the teacher; "
                            "copy the student first (copy.deepcopy or save and reload)")
    vt, vs = teacher.config.vocab_size, student.config.vocab_size
    if vt != vs:
        raise MinitronError(f"teacher vocabulary ({vt}) and student vocabulary ({vs}) differ: logit "
                            "distillation needs the same tokenizer for both")
    toks = [t for t in tokenizers if t is not None]
    if len(toks) == 2 and toks[0].get_vocab() != toks[1].get_vocab():
        raise MinitronError("teacher and student tokenizers differ: logit distillation needs the same tokenizer")


def due(step: int, every: int, cfg: DistillConfig) -> bool:
    """Whether step ``step`` (1-based) ends an interval of ``every`` steps; the last step always does."""
    return step == cfg.steps or (every > 0 and step % every == 0)


# --- the loop -------------------------------------------------------------------------------------
class Trainer:
    """Teacher, student (trained in float32 on ``cfg.device``), data, optimizer and the state of training."""

    def __init__(self, teacher, student, train_ids: torch.Tensor, eval_ids: torch.Tensor, cfg: DistillConfig):
        check_compatible(teacher, student)
        self.cfg, self.device = cfg, resolve_device(cfg.device)
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.student = student.to(device=self.device, dtype=torch.float32).train()
        self.train_ids, self.eval_ids = train_ids, eval_ids[: cfg.eval_samples]
        self.opt, self.sched = make_optimizer(self.student, cfg)
        self.state = TrainState()

    def evaluate(self) -> dict:
        return evaluate(self.student, self.teacher, self.eval_ids, self.cfg, self.device)

    def run(self, after_step: Callable[[Trainer], bool] | None = None, progress: bool = False) -> bool:
        """Train from ``state.step`` to ``cfg.steps``; True when finished, False when ``after_step`` stopped it.

        Evaluates before the first step (unless the state already holds evaluations), every
        ``cfg.eval_every`` steps and after the last. ``after_step`` returning True stops early.
        """
        from tqdm.auto import tqdm

        cfg, st = self.cfg, self.state
        if not st.evals:
            st.evals.append({"step": 0, **self.evaluate()})
        bar = tqdm(total=cfg.steps, initial=st.step, desc=cfg.mode, disable=not progress, dynamic_ncols=True)
        t0 = time.perf_counter() - st.elapsed_s
        try:
            for step in range(st.step, cfg.steps):
                row = train_step(step, self.student, self.teacher, self.train_ids, self.opt, self.sched, cfg,
                                 self.device)
                st.history.append(row)
                st.step, st.elapsed_s = step + 1, time.perf_counter() - t0
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", refresh=False)
                bar.update(1)
                if due(step + 1, cfg.eval_every, cfg):
                    st.evals.append({"step": step + 1, **self.evaluate()})
                    if progress:
                        bar.write(eval_line(st.evals[-1]))
                if after_step is not None and after_step(self) and step + 1 < cfg.steps:
                    return False
        finally:
            bar.close()
        return True

    def summary(self) -> dict:
        """Held-out metrics before and after, and their changes."""
        first, last = self.state.evals[0], self.state.evals[-1]
        return {"before": first, "after": last, "loss_change": last["loss"] - first["loss"],
                "kl_change": last["kl"] - first["kl"]}

    def record(self) -> dict:
        """The training record: config, metrics, history, tokens seen."""
        cfg = self.cfg
        return {"mode": cfg.mode, "config": asdict(cfg), "final": self.summary(), "evals": self.state.evals,
                "history": self.state.history, "elapsed_s": self.state.elapsed_s,
                "train_windows": list(self.train_ids.shape),
                "tokens_seen": cfg.steps * cfg.batch_size * cfg.grad_accum * self.train_ids.shape[1],
                "protocol": PROTOCOL}


def eval_line(e: dict) -> str:
    return (f"step {e['step']}: held-out loss {e['loss']:.4f} (ppl {e['ppl']:.2f}), "
            f"KL to teacher {e['kl']:.4f}, teacher loss {e['teacher_loss']:.4f}")
