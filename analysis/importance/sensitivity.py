"""Layer sensitivity on held-out windows: the loss with a block of layers removed, reusing the unchanged prefix.

For a batch, one forward records the residual state x_j at every layer boundary j = 0..L.
Removing the contiguous block [l, l+n) then only needs layers l+n..L-1 run on x_l: the prefix
x_0..x_l is shared by every block that starts at l or later. Cost for n = 1: L(L-1)/2 layer
evaluations instead of L(L-1) for re-running the whole model per removed layer.

Every loss is the held-out next-token loss of ``analysis.evaluation.loss`` (its ``PROTOCOL``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from analysis.evaluation.loss import head_nll, model_nll
from analysis.models.adapter import DecoderAdapter


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
