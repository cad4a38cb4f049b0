"""Next-token loss on held-out windows, and the KL between two models: the one place these are computed.

Held-out protocol (``PROTOCOL``, recorded with every number): every window of T tokens is scored
independently; tokens 1..T-1 are predicted from their prefix inside the window (Hugging Face's
fixed-length recipe with stride = T), no BOS added, float32 log-softmax; loss = NLL sum / N(T-1),
perplexity = exp(loss). KL(teacher || student) on held-out windows covers all T positions.

The LM head runs in chunks of at most ``max_logits`` logits: with a 256k vocabulary one 4096-token
sample alone would need 4 GB of float32 logits. Training losses on full logits (``forward_kl``,
``clm_loss``) are here too, so evaluation and training share one definition of each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from analysis.core.errors import MinitronError
from analysis.models.adapter import DecoderAdapter

PROTOCOL = ("non-overlapping windows of seq_len tokens from the eval split; each scored independently; "
            "tokens 1..T-1 of a window predicted from their in-window prefix (HF fixed-length recipe, "
            "stride = seq_len); no BOS; float32 log-softmax")
MAX_LOGITS = 1 << 27  # float32 logits per LM-head chunk: 512 MiB
IGNORE = -100  # target id of an unscored position


@dataclass(frozen=True)
class Heldout:
    """A summed next-token NLL and the number of tokens it scored."""

    nll: float  # sum of -log p(token) over scored tokens, nats
    tokens: int  # scored tokens, N x (T - 1)

    @property
    def loss(self) -> float:
        """Mean NLL per scored token (nats)."""
        if self.tokens <= 0:
            raise ValueError("no tokens were scored: a loss of nothing is not a number")
        return self.nll / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)


def _chunk(ad: DecoderAdapter, max_logits: int) -> int:
    return max(1, max_logits // ad.config.vocab_size)


def head_nll(ad: DecoderAdapter, normed: torch.Tensor, input_ids: torch.Tensor,
             max_logits: int = MAX_LOGITS) -> torch.Tensor:
    """NLL sum (float64 scalar) of final-normed states (B, T, D) through the LM head, scoring input_ids[:, 1:]."""
    h = normed[:, :-1].flatten(0, 1)  # (B*(T-1), D): position t predicts token t+1
    return _rows_nll(ad, h, input_ids[:, 1:].flatten(), max_logits)


def targets_nll(ad: DecoderAdapter, normed: torch.Tensor, targets: torch.Tensor,
                max_logits: int = MAX_LOGITS) -> torch.Tensor:
    """NLL sum (float64) of final-normed states (B, T, D) against per-position targets (B, T), -100 = unscored.

    targets[b, t] is the token position t predicts (the next token, for a causal model); only scored
    positions go through the LM head.
    """
    keep = targets.flatten() != IGNORE
    h = normed.flatten(0, 1)[keep.to(normed.device)]  # (scored, D)
    return _rows_nll(ad, h, targets.flatten()[keep], max_logits)


def _rows_nll(ad: DecoderAdapter, h: torch.Tensor, y: torch.Tensor, max_logits: int) -> torch.Tensor:
    """Sum over rows of -log softmax(lm_head(h))[y], float32 log-softmax, float64 total. h (n, D), y (n,)."""
    step = _chunk(ad, max_logits)
    total = torch.zeros((), dtype=torch.float64, device=h.device)
    for s in range(0, h.shape[0], step):
        logits = ad.lm_head(h[s:s + step]).float()  # (chunk, V)
        nll = F.cross_entropy(logits, y[s:s + step].to(logits.device), reduction="sum")
        total += nll.double().to(total.device)
    return total


@torch.no_grad()
def token_pair_stats(student: DecoderAdapter, s_normed: torch.Tensor, teacher: DecoderAdapter,
                     t_normed: torch.Tensor, input_ids: torch.Tensor, max_logits: int = MAX_LOGITS) -> dict:
    """Per-token statistics of a student against its teacher, from final-normed states (B, T, D).

    One chunked pass through both LM heads, float32 log-softmax (the ``PROTOCOL`` of ``head_nll``):
      kl     (B, T)    KL(p_t || p_s) at every position (the summand of ``head_kl``)
      agree  (B, T)    argmax p_t == argmax p_s (top-1 agreement; ties: lowest token id)
      s_nll  (B, T-1)  -log p_s(x_{t+1} | x_{<=t}) (the summands of ``head_nll``); t_nll likewise
      s_top, t_top (B, T)  each model's most likely next token
    """
    B, T = input_ids.shape
    s_rows, t_rows = s_normed.flatten(0, 1), t_normed.flatten(0, 1)
    target = torch.cat([input_ids[:, 1:], input_ids[:, :1]], dim=1).flatten()  # last column: unused filler
    step = _chunk(student, max_logits)
    out = {k: [] for k in ("kl", "s_nll", "t_nll", "s_top", "t_top")}
    for i in range(0, s_rows.shape[0], step):
        log_s = F.log_softmax(student.lm_head(s_rows[i:i + step]).float(), dim=-1)  # (chunk, V)
        t_logits = teacher.lm_head(t_rows[i:i + step].to(teacher.lm_head.weight.device))
        log_t = F.log_softmax(t_logits.float().to(log_s.device), dim=-1)
        y = target[i:i + step].to(log_s.device)[:, None]
        out["kl"].append(_kl_per_row(log_s, log_t))
        out["s_nll"].append(-log_s.gather(1, y)[:, 0])
        out["t_nll"].append(-log_t.gather(1, y)[:, 0])
        out["s_top"].append(log_s.argmax(dim=-1))
        out["t_top"].append(log_t.argmax(dim=-1))
    stats = {k: torch.cat(v).view(B, T) for k, v in out.items()}
    stats["s_nll"], stats["t_nll"] = stats["s_nll"][:, :-1], stats["t_nll"][:, :-1]
    stats["agree"] = stats["s_top"] == stats["t_top"]
    return stats


@torch.no_grad()
def model_nll(ad: DecoderAdapter, input_ids: torch.Tensor) -> torch.Tensor:
    """NLL sum of the full model on one batch (B, T), scored through the chunked LM head."""
    normed = ad.backbone(input_ids=input_ids, use_cache=False).last_hidden_state
    return head_nll(ad, normed, input_ids)


@torch.no_grad()
def heldout(model: torch.nn.Module, ids: torch.Tensor, batch_size: int = 8) -> Heldout:
    """The held-out NLL of ``model`` on windows ``ids`` (N, T) under ``PROTOCOL``."""
    ad, device = DecoderAdapter(model), next(model.parameters()).device
    total = sum(float(model_nll(ad, batch.to(device))) for batch in ids.split(batch_size))
    return Heldout(nll=total, tokens=ids.shape[0] * (ids.shape[1] - 1))


def _kl_per_row(log_s: torch.Tensor, log_t: torch.Tensor) -> torch.Tensor:
    """KL(p_t || p_s) = sum_v p_t(v) (log p_t(v) - log p_s(v)) per row: log-probabilities (n, V) -> (n,)."""
    return (log_t.exp() * (log_t - log_s)).sum(dim=-1)


def _kl_rows(s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sum over rows of KL(p_t || p_s), in float32: (n, V), (n, V) -> scalar."""
    log_s = F.log_softmax(s.float() / temperature, dim=-1)
    log_t = F.log_softmax(t.float() / temperature, dim=-1)
    return _kl_per_row(log_s, log_t).sum()


@torch.no_grad()
def head_kl(student: DecoderAdapter, s_normed: torch.Tensor, teacher: DecoderAdapter, t_normed: torch.Tensor,
            max_logits: int = MAX_LOGITS) -> torch.Tensor:
    """Sum over all B*T positions of KL(teacher || student), float64, from final-normed states (B, T, D)."""
    s_rows, t_rows = s_normed.flatten(0, 1), t_normed.flatten(0, 1).to(s_normed.device)
    step = _chunk(student, max_logits)
    total = torch.zeros((), dtype=torch.float64, device=s_normed.device)
    for i in range(0, s_rows.shape[0], step):
        s_logits = student.lm_head(s_rows[i:i + step])
        t_logits = teacher.lm_head(t_rows[i:i + step].to(teacher.lm_head.weight.device)).to(s_logits.device)
        total += _kl_rows(s_logits, t_logits, 1.0).double()
    return total


@torch.no_grad()
def heldout_pair(student: torch.nn.Module, teacher: torch.nn.Module, ids: torch.Tensor, batch_size: int = 8) -> dict:
    """Student and teacher held-out loss on the same windows, and KL(teacher || student) per token.

    One backbone forward per model and batch; the LM heads run chunked. Returns loss, ppl,
    teacher_loss, kl (mean over all N*T positions) and tokens (scored next-token targets).
    """
    s_ad, t_ad = DecoderAdapter(student), DecoderAdapter(teacher)
    if s_ad.config.vocab_size != t_ad.config.vocab_size:
        raise MinitronError(f"student vocabulary ({s_ad.config.vocab_size}) and teacher vocabulary "
                            f"({t_ad.config.vocab_size}) differ: the models must share a tokenizer")
    s_dev, t_dev = next(student.parameters()).device, next(teacher.parameters()).device
    nll = t_nll = kl = 0.0
    for batch in ids.split(batch_size):
        s_normed = s_ad.backbone(input_ids=batch.to(s_dev), use_cache=False).last_hidden_state
        t_normed = t_ad.backbone(input_ids=batch.to(t_dev), use_cache=False).last_hidden_state
        nll += float(head_nll(s_ad, s_normed, batch.to(s_dev)))
        t_nll += float(head_nll(t_ad, t_normed, batch.to(t_dev)))
        kl += float(head_kl(s_ad, s_normed, t_ad, t_normed))
    tokens = ids.shape[0] * (ids.shape[1] - 1)
    s_part, t_part = Heldout(nll, tokens), Heldout(t_nll, tokens)
    return {"loss": s_part.loss, "ppl": s_part.perplexity, "teacher_loss": t_part.loss, "kl": kl / ids.numel(),
            "tokens": tokens}


# --- training losses on full logits ---------------------------------------------------------------
def _rows(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(..., V) logits -> (N, V) rows of the scored positions."""
    rows = logits.reshape(-1, logits.shape[-1])
    return rows if mask is None else rows[mask.reshape(-1).bool()]


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
