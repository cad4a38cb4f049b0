"""Per-token divergence of students from their teacher, and their residual streams: the numbers ``compare`` reports.

Token statistics come from ``analysis.evaluation.loss.token_pair_stats`` (one chunked pass through both
LM heads); means carry 95% bootstrap intervals over windows (``analysis.evaluation.intervals``), CKA is
``analysis.evaluation.similarity``. Residual states are captured by hooks on the decoder layers that only
copy the drawn tokens' rows (k, D) to the host, and are removed when the forward ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from analysis.evaluation.intervals import paired_difference, ratio_interval
from analysis.evaluation.loss import token_pair_stats
from analysis.evaluation.similarity import centered_gram, cka_matrix, linear_cka, matched_layers
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadedModel

TOP_SHARES = (0.01, 0.1)  # concentration: share of the loss increase carried by the top 1% and 10% of tokens
MASSIVE = 20.0  # a token whose residual norm exceeds this many times its layer's median norm (either model)


# --- one forward with the residual stream captured ----------------------------------------------------
@contextlib.contextmanager
def residuals(ad: DecoderAdapter, store: list[list[torch.Tensor]], mask: torch.Tensor) -> Iterator[None]:
    """Append x[mask] (k, D) of every layer boundary j = 0..L to ``store[j]`` during one forward.

    Boundary j < L is the input of layer j (j = 0: the embeddings), L the last layer's output, before the
    final norm. The hooks are removed when the block exits, whatever happens.
    """
    def take(j):
        def hook(module, args, kwargs, out=None):
            x = (out[0] if isinstance(out, tuple) else out) if out is not None else \
                (args[0] if args else kwargs["hidden_states"])
            store[j].append(x[mask.to(x.device)].float().cpu())
        return hook

    handles = [layer.register_forward_pre_hook(take(j), with_kwargs=True) for j, layer in enumerate(ad.layers)]
    handles.append(ad.layers[-1].register_forward_hook(take(ad.num_layers), with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def cka_mask(n: int, t: int, tokens: int, seed: int) -> torch.Tensor:
    """(n, t) bool: ``tokens`` positions drawn without replacement from positions 1..t-1 of every window."""
    g = torch.Generator().manual_seed(seed)
    pool = n * (t - 1)
    pick = torch.randperm(pool, generator=g)[:min(tokens, pool)]
    mask = torch.zeros(n, t, dtype=torch.bool)
    mask[pick // (t - 1), pick % (t - 1) + 1] = True
    return mask


@dataclass
class Side:
    """One student's per-token statistics and residual states over all windows."""

    label: str
    lm: LoadedModel
    records: dict
    stats: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    states: list[list[torch.Tensor]] = field(default_factory=list)

    def add(self, stats: dict) -> None:
        for k, v in stats.items():
            self.stats.setdefault(k, []).append(v.cpu())

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.cat(v) for k, v in self.stats.items()}


@torch.no_grad()
def collect(teacher: LoadedModel, sides: list[Side], ids: torch.Tensor, mask: torch.Tensor, batch_size: int):
    """Teacher states, and each side's token statistics and states, window batch by window batch."""
    t_ad = DecoderAdapter(teacher.model)
    t_states = [[] for _ in range(t_ad.num_layers + 1)]
    for side in sides:
        side.states = [[] for _ in range(DecoderAdapter(side.lm.model).num_layers + 1)]
    t_dev = next(teacher.model.parameters()).device
    for s in tqdm(range(0, ids.shape[0], batch_size), desc="compare", unit="batch"):
        batch, m = ids[s:s + batch_size], mask[s:s + batch_size]
        with residuals(t_ad, t_states, m):
            t_normed = t_ad.backbone(input_ids=batch.to(t_dev), use_cache=False).last_hidden_state
        for side in sides:
            ad = DecoderAdapter(side.lm.model)
            with residuals(ad, side.states, m):
                s_normed = ad.backbone(input_ids=batch.to(next(side.lm.model.parameters()).device),
                                       use_cache=False).last_hidden_state
            side.add(token_pair_stats(ad, s_normed, t_ad, t_normed, batch.to(s_normed.device)))
    return [torch.cat(s) for s in t_states]


# --- summaries ----------------------------------------------------------------------------------------
def concentration(delta: torch.Tensor) -> dict:
    """How concentrated a loss increase is: share of Σ Δ carried by the top 1% / 10% of tokens by Δ."""
    d = delta.double().flatten().sort(descending=True).values
    total = float(d.sum())
    out = {"total_increase": total, "tokens_worse": float((d > 0).double().mean())}
    for share in TOP_SHARES:
        k = max(1, round(share * d.numel()))
        out[f"top_{share:g}"] = float(d[:k].sum()) / total if total > 0 else None
    return out


def worst_tokens(t: dict, teacher_nll: torch.Tensor, ids: torch.Tensor, tokenizer, k: int,
                 context: int) -> list[dict]:
    """The ``k`` tokens whose loss rose most, with the text before them and both models' guesses."""
    delta = t["s_nll"] - teacher_nll  # (N, T-1): position p scores token p+1
    order = delta.flatten().argsort(descending=True)[:k]
    rows, T1 = [], delta.shape[1]
    dec = (lambda x: tokenizer.decode(x)) if tokenizer is not None else (lambda x: str(list(x)))
    for flat in order.tolist():
        w, p = divmod(flat, T1)
        rows.append({
            "window": w, "position": p + 1, "delta_nll": float(delta[w, p]),
            "context": dec(ids[w, max(0, p + 1 - context):p + 1].tolist()), "token": dec([int(ids[w, p + 1])]),
            "teacher_p": float(torch.exp(-teacher_nll[w, p])), "student_p": float(torch.exp(-t["s_nll"][w, p])),
            "teacher_top": dec([int(t["t_top"][w, p])]), "student_top": dec([int(t["s_top"][w, p])]),
        })
    return rows


def summarize(side: Side, t: dict, teacher_nll: torch.Tensor, iters: int, seed: int) -> dict:
    """Means with 95% intervals over windows, by-position curves and the loss-increase concentration."""
    N, T = t["kl"].shape
    per_window = torch.full((N,), float(T), dtype=torch.float64)
    scored = torch.full((N,), float(T - 1), dtype=torch.float64)
    s_sum, t_sum = t["s_nll"].double().sum(1), teacher_nll.double().sum(1)
    ci = {"iters": iters, "seed": seed}
    return {
        "model": {k: side.lm.provenance.get(k) for k in ("name", "ref", "kind", "weights_fingerprint", "params")},
        "role": side.records["role"], "kept_layers": side.records["kept_layers"],
        "loss": ratio_interval(s_sum, scored, **ci).to_json(),
        "teacher_loss": ratio_interval(t_sum, scored, **ci).to_json(),
        "loss_increase": paired_difference(t_sum, s_sum, scored, **ci).to_json(),
        "kl": ratio_interval(t["kl"].double().sum(1), per_window, **ci).to_json(),
        "top1_agreement": ratio_interval(t["agree"].double().sum(1), per_window, **ci).to_json(),
        "concentration": concentration(t["s_nll"] - teacher_nll),
        "by_position": {"kl": t["kl"].double().mean(0).tolist(),
                        "agreement": t["agree"].double().mean(0).tolist(),
                        "loss_increase": (t["s_nll"] - teacher_nll).double().mean(0).tolist()},
        "tokens": {"windows": N, "positions": T, "kl_positions": N * T, "scored": N * (T - 1)},
    }


def cka_section(teacher_states: list[torch.Tensor], side: Side, teacher_layers: int) -> tuple[dict, torch.Tensor]:
    """CKA of every (student boundary, teacher boundary) pair and at matched depth."""
    grams_t = torch.stack([centered_gram(x) for x in teacher_states])
    s_states = [torch.cat(x) for x in side.states]
    grams_s = torch.stack([centered_gram(x) for x in s_states])
    matrix = cka_matrix(grams_s, grams_t)  # (Ls+1, Lt+1)
    kept, Ls = side.records["kept_layers"], len(side.states) - 1
    if kept is None and Ls != teacher_layers:
        pairs, how = [], "none: the depths differ and the student has no prune_recipe.json with kept_layers"
    else:
        pairs = matched_layers(teacher_layers, kept)
        how = "kept_layers of prune_recipe.json" if kept is not None else "same depth: boundary j to boundary j"
    matched = [float(matrix[s, t]) for s, t in pairs]
    section = {"tokens": int(grams_t.shape[1]), "matching": how, "pairs": pairs, "matched": matched,
               "matched_mean": sum(matched) / len(matched) if matched else None}
    return section | {"without_massive": without_massive(teacher_states, s_states, pairs, matched)}, matrix.float()


def massive_tokens(states: list[torch.Tensor], factor: float = MASSIVE) -> torch.Tensor:
    """(tokens,) bool: tokens whose residual norm, after any layer, exceeds ``factor`` x that layer's median.

    Such "massive activations" (a handful of tokens, often attention sinks) dominate linear CKA: one token
    of a thousand can move it from 0.9 to 0.02.
    """
    out = torch.zeros(states[0].shape[0], dtype=torch.bool)
    for x in states:
        norms = x.float().norm(dim=-1).cpu()
        out |= norms > factor * norms.median()
    return out


def without_massive(teacher_states: list[torch.Tensor], student_states: list[torch.Tensor], pairs: list,
                    matched_all: list[float]) -> dict:
    """Matched-depth CKA with the tokens either model carries as massive activations left out
    (``matched_all``, the CKA over every token, is reused when there are none)."""
    drop = massive_tokens(teacher_states) | massive_tokens(student_states)
    keep = ~drop
    if not pairs or int(keep.sum()) < 3:
        return {"factor": MASSIVE, "dropped": int(drop.sum()), "matched": [], "matched_mean": None}
    matched = (list(matched_all) if not drop.any() else
               [linear_cka(student_states[i][keep], teacher_states[j][keep]) for i, j in pairs])
    return {"factor": MASSIVE, "dropped": int(drop.sum()), "matched": matched,
            "matched_mean": sum(matched) / len(matched)}


def distillation_effect(base: dict, dist: dict, iters: int, seed: int) -> dict:
    """Distilled minus pruned-only, paired over the same windows, for KL, agreement and loss."""
    N, T = dist["kl"].shape
    ci = {"iters": iters, "seed": seed}
    per_window = torch.full((N,), float(T), dtype=torch.float64)
    scored = torch.full((N,), float(T - 1), dtype=torch.float64)
    return {"kl": paired_difference(base["kl"].double().sum(1), dist["kl"].double().sum(1), per_window,
                                    **ci).to_json(),
            "top1_agreement": paired_difference(base["agree"].double().sum(1), dist["agree"].double().sum(1),
                                                per_window, **ci).to_json(),
            "loss": paired_difference(base["s_nll"].double().sum(1), dist["s_nll"].double().sum(1), scored,
                                      **ci).to_json()}
