"""Logit distillation (and plain CLM fine-tuning) of a pruned student from its teacher.

Minitron retrains pruned models with forward KL(teacher || student) on the logits, temperature 1,
over the full vocabulary (no top-k), and the final models use that loss alone; ``DistillConfig``
defaults to exactly that. ``kd_weight=0, clm_weight=1`` (``DistillConfig.finetune``) is plain
next-token fine-tuning through the same loop, so the two compare at equal steps and data.

Data protocol (see ``analysis.data``): one token stream cut into non-overlapping ``seq_len`` windows,
permuted with the data seed; the first ``eval_samples`` windows are the held-out set (the same
windows ``analyze`` evaluates with the same seed and length), the following windows are the
training set. Training cycles through them in a fresh seeded order each epoch; the order is a pure
function of (seed, step), which is what makes resumption exact.

Held-out metrics: student next-token loss over every window (first token of each window unscored,
T-1 tokens per window: Hugging Face's fixed-length recipe with stride = seq_len), its perplexity
exp(loss), the teacher's loss on the same tokens, and KL(teacher || student) over all T positions.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from analysis.core.errors import MinitronError
from analysis.training.checkpoint import (
    CHECKPOINT,
    TRAINER,
    export_model,
    load_checkpoint,
    save_checkpoint,
    write_json_atomic,
)

PROTOCOL = ("train = calibration windows of analysis.data (after the eval windows), seeded order per epoch; "
            "held-out = first eval_samples windows; loss over T-1 targets per window (stride = seq_len, "
            "first token unscored), ppl = exp(loss); KL(teacher||student) over all T positions, temperature 1")
RESULT = "distill.json"
MODEL_DIR = "model"
# Fields that change the training trajectory: a resumed run must match the checkpoint on these.
TRAJECTORY_FIELDS = ("steps", "batch_size", "grad_accum", "lr", "min_lr", "warmup_steps", "weight_decay",
                     "kd_weight", "clm_weight", "temperature", "max_grad_norm", "seed")


@dataclass
class DistillConfig:
    """How the student is trained; defaults follow the paper's retraining recipe, scaled down."""

    steps: int = 100  # optimizer steps
    seq_len: int = 256  # tokens per training and evaluation window
    batch_size: int = 4  # windows per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step (effective batch = batch_size * grad_accum)
    lr: float = 1e-4  # peak learning rate, reached at the end of warmup (paper: 1e-4)
    min_lr: float = 1e-5  # floor of the cosine decay, reached at the last step (paper: 1e-5)
    warmup_steps: int = 10  # linear warmup from lr/warmup_steps to lr
    weight_decay: float = 0.1  # AdamW decay on matrices only; norms and biases are not decayed
    max_grad_norm: float = 1.0  # gradient clipping (0 disables): early KD gradients of a pruned model spike
    kd_weight: float = 1.0  # weight of KL(teacher || student) on logits
    clm_weight: float = 0.0  # weight of next-token cross-entropy on the data (the paper's final models: 0)
    temperature: float = 1.0  # softmax temperature of both distributions in the KL (paper: 1)
    eval_every: int = 20  # held-out evaluation every N steps (0: only before and after training)
    eval_samples: int = 8  # held-out windows (the first of the permuted windows)
    checkpoint_every: int = 50  # resumable checkpoint every N steps (0: only at the end)
    kl_chunk: int = 1024  # tokens per chunk of the vocabulary-wide KL, to bound float32 memory
    seed: int = 0  # order of training windows each epoch
    device: str = "auto"  # auto (cuda if present), cpu, cuda, cuda:N
    dtype: str = "auto"  # compute dtype: auto = bf16 autocast on CUDA, float32 on CPU (weights stay float32)

    def finetune(self) -> DistillConfig:
        """The same recipe as plain CLM fine-tuning (no teacher in the loss)."""
        return replace(self, kd_weight=0.0, clm_weight=1.0)

    @property
    def mode(self) -> str:
        return "finetune" if self.kd_weight == 0 else ("distill" if self.clm_weight == 0 else "distill+clm")


@dataclass
class DistillResult:
    out_dir: Path
    model_dir: Path | None  # None when the run stopped early (stop_after)
    history: list[dict]  # per optimizer step: step, lr, loss, kd, clm, grad_norm
    evals: list[dict]  # held-out: step, loss, ppl, kl, teacher_loss, tokens
    final: dict = field(default_factory=dict)  # before/after held-out metrics
    finished: bool = True


# --- losses -------------------------------------------------------------------------------------
def _rows(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(..., V) logits -> (N, V) rows of the scored positions."""
    rows = logits.reshape(-1, logits.shape[-1])
    return rows if mask is None else rows[mask.reshape(-1).bool()]


def _kl_rows(s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sum over rows of KL(p_t || p_s), in float32: (n, V), (n, V) -> scalar."""
    log_s = F.log_softmax(s.float() / temperature, dim=-1)
    log_t = F.log_softmax(t.float() / temperature, dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum()


def forward_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor | None = None,
               temperature: float = 1.0, chunk: int = 1024) -> torch.Tensor:
    """Forward KL(teacher || student), the mean over scored tokens, times temperature².

        KL = T² · (1/N) Σ_n Σ_v p_t(v) (log p_t(v) − log p_s(v)),   p = softmax(logits / T)

    Shapes: logits (B, T, V) or (N, V); mask (B, T) or (N,), True where a token is scored (None: all).
    Computed in float32 over the full vocabulary. Rows are processed ``chunk`` at a time and each
    chunk is recomputed in backward (activation checkpointing), so float32 copies of the (N, V)
    logits never all exist at once. T² keeps gradient scale independent of T (Hinton et al.);
    at T = 1, the paper's setting, it is the plain KL.
    """
    if student_logits.shape != teacher_logits.shape:
        raise MinitronError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                            f"{tuple(teacher_logits.shape)} differ: the models must share a vocabulary")
    s, t = _rows(student_logits, mask), _rows(teacher_logits.detach(), mask)
    if s.shape[0] == 0:
        return s.sum() * 0.0
    total = s.new_zeros((), dtype=torch.float32)
    for i in range(0, s.shape[0], chunk):
        s_i, t_i = s[i:i + chunk], t[i:i + chunk]
        if s_i.requires_grad:
            total = total + checkpoint(_kl_rows, s_i, t_i, temperature, use_reentrant=False)
        else:
            total = total + _kl_rows(s_i, t_i, temperature)
    return total * temperature**2 / s.shape[0]


def clm_loss(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy, mean over scored targets, in float32.

        CLM = −(1/N) Σ_{b, t ≥ 1} log p_s(x_{b,t} | x_{b,<t})

    Shapes: logits (B, T, V), input_ids (B, T), mask (B, T) over targets (None: all). Position t's
    logits predict token t+1, so the first token of each window is never a target.
    """
    pred, target = logits[:, :-1], input_ids[:, 1:]
    m = None if mask is None else mask[:, 1:]
    rows, tgt = _rows(pred, m), target.reshape(-1) if m is None else target[m.bool()]
    return F.cross_entropy(rows.float(), tgt)


# --- schedule -----------------------------------------------------------------------------------
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


# --- data order ---------------------------------------------------------------------------------
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
def _autocast(device: torch.device, cfg: DistillConfig):
    from analysis.models.loading import resolve_dtype

    dtype = resolve_dtype(cfg.dtype, device)
    if dtype == torch.float16:
        raise MinitronError("float16 training needs loss scaling, which is not implemented; use bfloat16")
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


@torch.no_grad()
def evaluate(student, teacher, ids: torch.Tensor, cfg: DistillConfig, device: torch.device) -> dict:
    """Held-out student loss/perplexity, teacher loss and KL(teacher || student) (module docstring)."""
    was_training = student.training
    student.eval()
    ce = t_ce = kl = 0.0
    for batch in ids.split(cfg.batch_size):
        batch = batch.to(device)
        with _autocast(device, cfg):
            s, t = student(batch, use_cache=False).logits, teacher(batch, use_cache=False).logits
        n_targets = batch.shape[0] * (batch.shape[1] - 1)  # means -> sums, so batches weigh by tokens
        ce += clm_loss(s, batch).item() * n_targets
        t_ce += clm_loss(t, batch).item() * n_targets
        kl += forward_kl(s, t, temperature=1.0, chunk=cfg.kl_chunk).item() * batch.numel()
    student.train(was_training)
    n_ce, n_kl = ids.shape[0] * (ids.shape[1] - 1), ids.numel()
    return {"loss": ce / n_ce, "ppl": math.exp(ce / n_ce), "teacher_loss": t_ce / n_ce, "kl": kl / n_kl,
            "tokens": n_ce}


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
        with _autocast(device, cfg):
            part, kd_i, clm_i = _micro_loss(student, teacher, batch, cfg)
        (part / cfg.grad_accum).backward()  # equal-size windows: mean of means is the batch mean
        loss, kd, clm = loss + part.item() / cfg.grad_accum, kd + kd_i / cfg.grad_accum, clm + clm_i / cfg.grad_accum
    norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.max_grad_norm or float("inf"))
    lr = opt.param_groups[0]["lr"]
    opt.step()
    sched.step()
    return {"step": step + 1, "lr": lr, "loss": loss, "kd": kd, "clm": clm, "grad_norm": float(norm)}


# --- data ----------------------------------------------------------------------------------------
def training_splits(tokenizer, data_cfg, cfg: DistillConfig, max_positions: int | None = None):
    """Held-out and training windows under the ``analysis.data`` protocol.

    Evaluation = the first ``cfg.eval_samples`` permuted windows (as ``analyze`` with the same
    seed and length); training = the calibration split, as many following windows as the run
    consumes (steps × batch × accumulation), capped by what the text holds.
    """
    import hashlib

    from analysis.data import corpus_text, make_splits, tokenize

    if max_positions is not None and cfg.seq_len > max_positions:
        raise MinitronError(f"--seq-len {cfg.seq_len} is longer than the model's context ({max_positions})")
    text = corpus_text(data_cfg)
    stream = tokenize(text, tokenizer)
    free = len(stream) // cfg.seq_len - cfg.eval_samples
    wanted = cfg.steps * cfg.batch_size * cfg.grad_accum
    data_cfg = replace(data_cfg, seq_len=cfg.seq_len, eval_samples=cfg.eval_samples,
                       calib_samples=max(1, min(wanted, free)))
    meta = {"source": data_cfg.source, "chars": len(text),
            "text_sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
    return make_splits(stream, data_cfg, meta)


# --- the loop -----------------------------------------------------------------------------------
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


def _data_hash(*tensors: torch.Tensor) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        h.update(t.cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _start(out_dir: Path, student, opt, sched, cfg: DistillConfig, resume: bool, device, data: str) -> dict:
    """Fresh trainer state, or the checkpoint's when resuming (its config and data must match)."""
    has_ckpt = (out_dir / CHECKPOINT / TRAINER).exists()
    if has_ckpt and not resume:
        raise MinitronError(f"{out_dir} already holds a training checkpoint; pass --resume to continue it "
                            "or choose another --out")
    state = load_checkpoint(out_dir, student, opt, sched, device) if resume else None
    if state is None:
        return {"step": 0, "history": [], "evals": [], "config": asdict(cfg), "elapsed_s": 0.0, "data": data}
    if state.get("data") != data:
        raise MinitronError(f"cannot resume {out_dir}: the training or held-out windows differ from the "
                            "checkpoint's (same --data, --seq-len, --eval-samples and --data-seed needed)")
    changed = [k for k in TRAJECTORY_FIELDS if state["config"].get(k) != getattr(cfg, k)]
    if changed:
        was = ", ".join(f"{k}={state['config'][k]}" for k in changed)
        raise MinitronError(f"cannot resume {out_dir}: {', '.join(changed)} differ from the checkpoint's ({was})")
    return state


def _due(step: int, every: int, cfg: DistillConfig) -> bool:
    return step == cfg.steps or (every > 0 and step % every == 0)


def distill(teacher, student, train_ids: torch.Tensor, eval_ids: torch.Tensor, cfg: DistillConfig,
            out_dir: str | Path, *, resume: bool = False, progress: bool = True, tokenizer=None,
            meta: dict | None = None, carry: tuple[Path, ...] = (), stop_after: int | None = None) -> DistillResult:
    """Train ``student`` toward ``teacher`` on ``train_ids`` (N, T); evaluate on ``eval_ids`` (M, T).

    Writes ``out_dir/checkpoint`` (resumable), ``out_dir/model`` (Hugging Face directory) and
    ``out_dir/distill.json`` (config, history, held-out metrics, ``meta`` such as provenance, also
    copied into the model directory); ``carry`` files (e.g. the student's ``prune_recipe.json``, which
    its card reads) are copied into the model directory. ``resume`` without a checkpoint starts afresh.
    ``stop_after=k`` checkpoints after step k and returns unfinished, as an interruption would.
    """
    from tqdm.auto import tqdm

    from analysis.models.loading import resolve_device

    check_compatible(teacher, student)
    device, out_dir = resolve_device(cfg.device), Path(out_dir)
    teacher.to(device).eval().requires_grad_(False)
    student.to(device=device, dtype=torch.float32).train()  # float32 master weights; autocast on GPU
    eval_ids = eval_ids[: cfg.eval_samples]
    opt, sched = make_optimizer(student, cfg)
    state = _start(out_dir, student, opt, sched, cfg, resume, device, _data_hash(train_ids, eval_ids))
    if not state["evals"]:
        state["evals"].append({"step": 0, **evaluate(student, teacher, eval_ids, cfg, device)})
    bar = tqdm(total=cfg.steps, initial=state["step"], desc=cfg.mode, disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter() - state["elapsed_s"]
    for step in range(state["step"], cfg.steps):
        row = train_step(step, student, teacher, train_ids, opt, sched, cfg, device)
        state["history"].append(row)
        state["step"], state["elapsed_s"] = step + 1, time.perf_counter() - t0
        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", refresh=False)
        bar.update(1)
        if _due(step + 1, cfg.eval_every, cfg):
            state["evals"].append({"step": step + 1, **evaluate(student, teacher, eval_ids, cfg, device)})
            if progress:
                bar.write(_eval_line(state["evals"][-1]))
        if _due(step + 1, cfg.checkpoint_every, cfg) or step + 1 == stop_after:
            save_checkpoint(out_dir, student, opt, sched, state)
        if step + 1 == stop_after and step + 1 < cfg.steps:
            bar.close()
            return DistillResult(out_dir, None, state["history"], state["evals"], finished=False)
    bar.close()
    return _finish(out_dir, student, teacher, tokenizer, cfg, state, meta or {}, train_ids, carry)


def _eval_line(e: dict) -> str:
    return (f"step {e['step']}: held-out loss {e['loss']:.4f} (ppl {e['ppl']:.2f}), "
            f"KL to teacher {e['kl']:.4f}, teacher loss {e['teacher_loss']:.4f}")


def _finish(out_dir, student, teacher, tokenizer, cfg, state, meta, train_ids, carry) -> DistillResult:
    """Export the model directory and write ``distill.json`` beside and inside it."""
    import transformers

    gen = getattr(student, "generation_config", None) or getattr(teacher, "generation_config", None)
    model_dir = export_model(student, out_dir / MODEL_DIR, tokenizer, gen, carry)
    first, last = state["evals"][0], state["evals"][-1]
    final = {"before": first, "after": last, "loss_change": last["loss"] - first["loss"],
             "kl_change": last["kl"] - first["kl"]}
    record = {
        "mode": cfg.mode, "config": asdict(cfg), "final": final, "evals": state["evals"],
        "history": state["history"], "elapsed_s": state["elapsed_s"],
        "train_windows": list(train_ids.shape), "tokens_seen": cfg.steps * cfg.batch_size * cfg.grad_accum
        * train_ids.shape[1],
        "protocol": PROTOCOL,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    } | meta
    write_json_atomic(out_dir / RESULT, record)
    write_json_atomic(model_dir / RESULT, record)
    return DistillResult(out_dir, model_dir, state["history"], state["evals"], final)
