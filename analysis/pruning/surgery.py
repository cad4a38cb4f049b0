"""Build the pruned model: a fresh HF model of the student config filled with sliced teacher weights.

Building fresh (instead of editing the teacher in place) means every attribute transformers derives
from the config (``num_key_value_groups``, ``layer_idx``, norm shapes) is right by construction,
the teacher is left untouched, and the result is a plain ``*ForCausalLM`` that ``from_pretrained``
loads without custom code. Module paths come from ``DecoderAdapter`` only.

Weight shapes (D hidden, H heads, hd head_dim, F MLP, V vocab; nn.Linear weight is [out, in]):
  embed / lm_head [V, D]   q [H*hd, D]   k, v [kv*hd, D]   o [D, H*hd]
  gate, up [F, D]          down [D, F]   norms [D] (+ bias [D] for LayerNorm1P)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig

from analysis.models.adapter import DecoderAdapter
from analysis.models.registry import Architecture
from analysis.pruning.merge import merge_query_rows
from analysis.pruning.plan import Importance, PrunePlan, PruneTarget, plan_for


def pruned_config(config: PretrainedConfig, student: Architecture, layers: list[int]) -> PretrainedConfig:
    """The teacher's config with the student's sizes; ``layers`` are the kept teacher layers."""
    new = copy.deepcopy(config)
    new.hidden_size = student.hidden
    new.intermediate_size = student.mlp
    new.num_attention_heads = student.heads
    new.head_dim = student.head_dim  # explicit: hidden/heads no longer equals head_dim
    new.num_hidden_layers = student.layers
    if getattr(new, "layer_types", None):
        new.layer_types = [config.layer_types[i] for i in layers]
    return new


def _assign(module: nn.Module, name: str, value: torch.Tensor) -> None:
    setattr(module, name, nn.Parameter(value.detach().clone().contiguous()))


def _slice_linear(dst: nn.Linear, src: nn.Linear, rows=None, cols=None, merge=None) -> None:
    """dst <- src.weight[rows][:, cols] (and bias[rows]); None keeps the whole axis.

    ``merge``: (pairs [P, 2], head_dim) merges query heads before slicing (``analysis.pruning.merge``).
    """
    w, b = src.weight, src.bias
    if merge is not None:
        w = merge_query_rows(w, *merge)
        b = None if b is None else merge_query_rows(b, *merge)
    if rows is not None:
        w = w.index_select(0, rows.to(w.device))
    if cols is not None:
        w = w.index_select(1, cols.to(w.device))
    _assign(dst, "weight", w)
    if b is not None:
        _assign(dst, "bias", b if rows is None else b.index_select(0, rows.to(w.device)))


def _slice_norm(dst: nn.Module, src: nn.Module, channels: torch.Tensor) -> None:
    """Every per-channel parameter of a norm (RMSNorm weight; LayerNorm1P weight and bias)."""
    for name, p in src.named_parameters(recurse=False):
        _assign(dst, name, p.index_select(0, channels.to(p.device)))


def head_rows(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[H'] head indices -> [H'*head_dim] row indices of q_proj (cols of o_proj)."""
    return (heads.view(-1, 1) * head_dim + torch.arange(head_dim)).reshape(-1)


def _slice_layer(old: DecoderAdapter, new: DecoderAdapter, i: int, j: int, plan: PrunePlan) -> None:
    """Teacher layer i -> student layer j."""
    ch = plan.channels
    rows = head_rows(plan.heads[i], plan.head_dim)
    (q0, k0, v0), (q1, k1, v1) = old.qkv_proj(i), new.qkv_proj(j)
    merge = (plan.head_merge[i], plan.head_dim) if len(plan.head_merge.get(i, ())) else None
    _slice_linear(q1, q0, rows=rows, cols=ch, merge=merge)
    _slice_linear(k1, k0, cols=ch)  # kv heads are all kept
    _slice_linear(v1, v0, cols=ch)
    _slice_linear(new.o_proj(j), old.o_proj(i), rows=ch, cols=rows)
    neurons = plan.neurons[i]
    for src, dst in zip(old.mlp_in_proj(i), new.mlp_in_proj(j)):
        _slice_linear(dst, src, rows=neurons, cols=ch)
    _slice_linear(new.down_proj(j), old.down_proj(i), rows=ch, cols=neurons)
    for src, dst in zip(old.norms(i), new.norms(j)):
        _slice_norm(dst, src, ch)


def _copy_buffers(dst: nn.Module, src: nn.Module) -> None:
    """Fill the student's buffers (rotary inv_freq: head_dim is unchanged) from the teacher's."""
    src_buffers = dict(src.named_buffers())
    for name, buf in list(dst.named_buffers()):
        if buf.is_meta:
            value = src_buffers[name]
            owner = dst.get_submodule(name.rpartition(".")[0])
            owner.register_buffer(name.rpartition(".")[2], value.clone(),
                                  persistent=name.rpartition(".")[2] not in owner._non_persistent_buffers_set)


def build_pruned(model: nn.Module, student: Architecture, plan: PrunePlan) -> nn.Module:
    """A new model of the student's shape holding the plan's slices of ``model`` (left untouched)."""
    old = DecoderAdapter(model)
    config = pruned_config(model.config, student, plan.layers)
    dtype = next(model.parameters()).dtype
    with torch.device("meta"):  # no allocation or random init: every tensor is assigned below
        pruned = AutoModelForCausalLM.from_config(config, dtype=dtype)
    new = DecoderAdapter(pruned)
    with torch.no_grad():
        emb = old.embed_tokens.weight
        _assign(new.embed_tokens, "weight", emb.index_select(1, plan.channels.to(emb.device)))
        for j, i in enumerate(plan.layers):
            _slice_layer(old, new, i, j, plan)
        _slice_norm(new.final_norm, old.final_norm, plan.channels)
        if old.tied:
            new.tie_embeddings()  # slice once, share again
        else:
            _slice_linear(new.lm_head, old.lm_head, cols=plan.channels)
    _copy_buffers(pruned, model)
    leftover = [n for n, t in [*pruned.named_parameters(), *pruned.named_buffers()] if t.is_meta]
    if leftover:  # a module the adapter does not cover: fail loudly rather than save garbage
        raise RuntimeError(f"pruning left tensors unset: {', '.join(leftover[:5])}")
    pruned.generation_config = copy.deepcopy(model.generation_config)
    return pruned.eval()


@dataclass
class Pruned:
    """A pruned model with the shape and plan it was built from."""

    model: nn.Module
    arch: Architecture  # the student shape
    plan: PrunePlan  # which teacher units survive


def prune_model(model: nn.Module, target: PruneTarget, importance: Importance, head_merge: bool = True) -> Pruned:
    """Importance -> plan -> weights: the one way a model is pruned (``model`` is left untouched).

    ``head_merge`` (the default, as in the paper) folds pruned query heads into kept ones when heads
    are pruned and ranked (``analysis.pruning.merge``); the plan records the pairs or why there are none.
    """
    student, plan = plan_for(DecoderAdapter(model).arch, target, importance, head_merge)
    return Pruned(build_pruned(model, student, plan), student, plan)
