"""Perplexity and layer sensitivity on held-out windows, reusing the unchanged prefix.

For a batch, one forward records the residual state x_j at every layer boundary j = 0..L.
Removing the contiguous block [l, l+n) then only needs layers l+n..L-1 run on x_l: the prefix
x_0..x_l is shared by every block that starts at l or later. Cost for n = 1: L(L-1)/2 layer
evaluations instead of L(L-1) for re-running the whole model per removed layer.

Protocol: every window of T tokens is scored independently: tokens 1..T-1 are predicted from
their prefix inside the window (Hugging Face's fixed-length recipe with stride = T), no BOS added.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from analysis.models.adapter import DecoderAdapter

PROTOCOL = ("non-overlapping windows of seq_len tokens from the eval split; each scored independently; "
            "tokens 1..T-1 of a window predicted from their in-window prefix (HF fixed-length recipe, "
            "stride = seq_len); no BOS; float32 log-softmax")


def head_nll(ad: DecoderAdapter, normed: torch.Tensor, input_ids: torch.Tensor,
             max_logits: int = 1 << 27) -> torch.Tensor:
    """NLL sum of final-normed states (B, T, D) through the LM head, scoring input_ids[:, 1:].

    Tokens go through the head in chunks of at most ``max_logits`` logits: with a 256k vocabulary
    one 4096-token sample alone would need 4 GB of float32 logits.
    """
    h = normed[:, :-1].flatten(0, 1)  # (B*(T-1), D): position t predicts token t+1
    y = input_ids[:, 1:].flatten()
    step = max(1, max_logits // ad.config.vocab_size)
    total = torch.zeros((), dtype=torch.float64, device=normed.device)
    for s in range(0, h.shape[0], step):
        logits = ad.lm_head(h[s:s + step]).float()  # (chunk, V)
        nll = torch.nn.functional.cross_entropy(logits, y[s:s + step].to(logits.device), reduction="sum")
        total += nll.double().to(total.device)
    return total


@contextlib.contextmanager
def capture_boundaries(ad: DecoderAdapter) -> Iterator[list]:
    """Record the residual state at every layer boundary (inputs of layers, last layer's output)."""
    states: list[torch.Tensor] = []
    handles = [layer.register_forward_pre_hook(
        lambda m, a, k: states.append(a[0] if a else k["hidden_states"]), with_kwargs=True)
        for layer in ad.layers]
    handles.append(ad.layers[-1].register_forward_hook(
        lambda m, a, out: states.append(out[0] if isinstance(out, tuple) else out)))
    try:
        yield states
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def model_nll(ad: DecoderAdapter, input_ids: torch.Tensor) -> torch.Tensor:
    """NLL sum of the full model on one batch (B, T), scored through the chunked LM head."""
    normed = ad.backbone(input_ids=input_ids, use_cache=False).last_hidden_state
    return head_nll(ad, normed, input_ids)


@torch.no_grad()
def full_pass(ad: DecoderAdapter, input_ids: torch.Tensor) -> tuple[torch.Tensor, list]:
    """NLL sum of the full model and the boundary states x_0..x_L of one batch."""
    with capture_boundaries(ad) as states:
        nll = model_nll(ad, input_ids)
    return nll, list(states)


@torch.no_grad()
def drop_block_nll(ad: DecoderAdapter, states: Sequence[torch.Tensor], input_ids: torch.Tensor,
                   start: int, n: int) -> torch.Tensor:
    """NLL sum with layers [start, start+n) removed, resuming from the stored x_start."""
    normed = ad.run_from(states[start], range(start + n, ad.num_layers))
    return head_nll(ad, normed, input_ids)


@torch.no_grad()
def drop_block_nll_naive(ad: DecoderAdapter, input_ids: torch.Tensor, start: int, n: int) -> torch.Tensor:
    """Reference: delete the block and re-run the whole model from the embeddings."""
    keep = [i for i in range(ad.num_layers) if not start <= i < start + n]
    with ad.keep_layers(keep):
        normed = ad.backbone(input_ids=input_ids, use_cache=False).last_hidden_state
    return head_nll(ad, normed, input_ids)
