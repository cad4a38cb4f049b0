"""The one place that knows module paths of Hugging Face decoders.

Supported: Nemotron (LayerNorm1P, squared-ReLU up/down MLP), Llama, Mistral and Qwen2
(RMSNorm, gated SiLU MLP). Everything else in the code base asks a ``DecoderAdapter``.

Activation shapes at the hook sites (B batch, T tokens):
  attention output projection input  (B, T, heads*head_dim)
  MLP down projection input          (B, T, mlp)
  pre-norm outputs                   (B, T, hidden)
  decoder layer input / output       (B, T, hidden)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from analysis.core.errors import MinitronError
from analysis.models.configs import SUPPORTED_FAMILIES, from_hf_config
from analysis.models.registry import Architecture, has_gated_mlp


class DecoderAdapter:
    """Uniform access to the parts of a ``*ForCausalLM`` decoder."""

    def __init__(self, model: nn.Module):
        family = getattr(model.config, "model_type", None)
        if family not in SUPPORTED_FAMILIES:
            raise MinitronError(
                f"model type '{family}' is not supported; supported: {', '.join(SUPPORTED_FAMILIES)}"
            )
        self.model = model
        self.family = family

    # --- shape -------------------------------------------------------------------------
    @property
    def arch(self) -> Architecture:
        return from_hf_config(self.model.config)

    @property
    def config(self):
        return self.model.config

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_heads(self) -> int:
        return self.config.num_attention_heads

    @property
    def num_kv_heads(self) -> int:
        return getattr(self.config, "num_key_value_heads", None) or self.num_heads

    @property
    def head_dim(self) -> int:
        return getattr(self.config, "head_dim", None) or self.config.hidden_size // self.num_heads

    @property
    def gated_mlp(self) -> bool:
        return has_gated_mlp(self.family)

    @property
    def tied(self) -> bool:
        return self.lm_head.weight is self.embed_tokens.weight

    # --- modules -------------------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        """The decoder stack without LM head (``model.model``): takes inputs_embeds, returns normed states."""
        return self.model.model

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.model.layers

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.model.model.embed_tokens

    @property
    def final_norm(self) -> nn.Module:
        return self.model.model.norm

    @property
    def lm_head(self) -> nn.Linear:
        return self.model.lm_head

    def tie_embeddings(self) -> None:
        """Share the input embedding with the LM head again (after the embedding was replaced)."""
        self.model.lm_head.weight = self.model.model.embed_tokens.weight

    def attention(self, i: int) -> nn.Module:
        return self.layers[i].self_attn

    def qkv_proj(self, i: int) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        a = self.attention(i)
        return a.q_proj, a.k_proj, a.v_proj

    def o_proj(self, i: int) -> nn.Linear:
        return self.attention(i).o_proj

    def mlp(self, i: int) -> nn.Module:
        return self.layers[i].mlp

    def mlp_in_proj(self, i: int) -> list[nn.Linear]:
        """Projections whose output rows are MLP neurons: [gate, up] (gated) or [up]."""
        m = self.mlp(i)
        return [m.gate_proj, m.up_proj] if self.gated_mlp else [m.up_proj]

    def mlp_pre_activation(self, i: int) -> nn.Linear:
        """The projection whose output goes through the activation function (gate or up)."""
        m = self.mlp(i)
        return m.gate_proj if self.gated_mlp else m.up_proj

    def down_proj(self, i: int) -> nn.Linear:
        return self.mlp(i).down_proj

    def norms(self, i: int) -> tuple[nn.Module, nn.Module]:
        """The two pre-norms of layer i: (before attention, before MLP)."""
        layer = self.layers[i]
        return layer.input_layernorm, layer.post_attention_layernorm

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, hidden) input of the first layer."""
        return self.embed_tokens(input_ids)

    def run_from(self, hidden: torch.Tensor, keep: Sequence[int]) -> torch.Tensor:
        """Run the given layers (in order) on ``hidden`` (input of the first kept layer), then the final norm.

        Uses the backbone's own forward (mask, rotary embeddings) through ``inputs_embeds``; valid
        because these families do not rescale embeddings inside the forward.
        """
        with self.keep_layers(keep):
            out = self.backbone(inputs_embeds=hidden, use_cache=False)
        return out.last_hidden_state

    @contextlib.contextmanager
    def forward(self, compile: str = "off", backend: str = "inductor") -> Iterator:
        """The backbone's forward under a compile mode (``analysis.core.perf.COMPILE_MODES``).

        off: eager. regional: each decoder layer's ``forward`` is compiled; the layers share one
        graph (same code, same shapes), so compiling takes seconds, and the backbone around them
        (causal-mask construction, rotary tables) stays eager, where transformers can skip the
        mask and attention keeps its flash kernel. full: the whole backbone as one graph.
        The layers' forwards are restored in ``finally``.
        """
        if compile == "full":
            yield torch.compile(self.backbone, dynamic=False, backend=backend)
            return
        if compile != "regional":
            yield self.backbone
            return
        originals = [layer.forward for layer in self.layers]
        try:
            for layer in self.layers:
                layer.forward = torch.compile(layer.forward, dynamic=False, backend=backend)
            yield self.backbone
        finally:
            for layer, fwd in zip(self.layers, originals):
                layer.forward = fwd

    @contextlib.contextmanager
    def keep_layers(self, keep: Sequence[int]) -> Iterator[None]:
        """Temporarily run only the layers in ``keep``; the original stack is restored in ``finally``."""
        original = self.model.model.layers
        n_orig = self.config.num_hidden_layers
        self.model.model.layers = nn.ModuleList([original[i] for i in keep])
        self.config.num_hidden_layers = len(keep)
        try:
            yield
        finally:
            self.model.model.layers = original
            self.config.num_hidden_layers = n_orig


def param_count(model: nn.Module) -> int:
    """Unique parameters (tied weights once), meta tensors included."""
    seen = {id(p): p.numel() for p in model.parameters()}
    return sum(seen.values())
