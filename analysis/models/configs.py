"""Translate between our ``Architecture`` and Hugging Face configs (transformers 5.x field layout)."""

from __future__ import annotations

from transformers import AutoConfig, PretrainedConfig

from analysis.core.errors import MinitronError
from analysis.models.registry import Architecture

SUPPORTED_FAMILIES = ("nemotron", "llama", "mistral", "qwen2")


def rope_parameters(config: PretrainedConfig) -> dict:
    """RoPE settings; transformers 5.x keeps theta and partial_rotary_factor in ``rope_parameters``."""
    params = getattr(config, "rope_parameters", None) or {}
    if isinstance(params, dict) and "full_attention" in params:  # per-layer-type layout
        params = params["full_attention"]
    return dict(params)


def to_hf_config(arch: Architecture, **overrides) -> PretrainedConfig:
    """A transformers config that builds exactly this architecture."""
    rope = {"rope_type": "default", "rope_theta": arch.rope_theta}
    common = {
        "vocab_size": arch.vocab, "hidden_size": arch.hidden, "intermediate_size": arch.mlp,
        "num_hidden_layers": arch.layers, "num_attention_heads": arch.heads,
        "num_key_value_heads": arch.kv_heads, "head_dim": arch.head_dim, "hidden_act": arch.activation,
        "max_position_embeddings": arch.max_positions, "tie_word_embeddings": arch.tied_embeddings,
    }
    if arch.family == "nemotron":
        rope["partial_rotary_factor"] = arch.rotary_fraction
        common |= {"norm_eps": arch.norm_eps, "partial_rotary_factor": arch.rotary_fraction}
    else:
        common |= {"rms_norm_eps": arch.norm_eps}
    common["rope_parameters"] = rope
    return AutoConfig.for_model(arch.family, **(common | overrides))


def from_hf_config(config: PretrainedConfig) -> Architecture:
    """Read an Architecture off a transformers config of a supported decoder family."""
    family = config.model_type
    if family not in SUPPORTED_FAMILIES:
        raise MinitronError(
            f"model type '{family}' is not supported; supported: {', '.join(SUPPORTED_FAMILIES)}"
        )
    rope = rope_parameters(config)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    nemotron = family == "nemotron"
    return Architecture(
        family=family, layers=config.num_hidden_layers, hidden=config.hidden_size, heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads, head_dim=head_dim,
        mlp=config.intermediate_size, vocab=config.vocab_size, activation=config.hidden_act,
        norm="layernorm1p" if nemotron else "rmsnorm",
        rotary_fraction=float(rope.get("partial_rotary_factor", 1.0)),
        rope_theta=float(rope.get("rope_theta", 10000.0)),
        max_positions=config.max_position_embeddings,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        norm_eps=float(config.norm_eps if nemotron else config.rms_norm_eps),
    )
