"""Shared fixtures: tiny random decoders built from configs, and the embedded default model."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from analysis.models.configs import to_hf_config
from analysis.models.registry import Architecture

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY = {
    "nemotron": Architecture(family="nemotron", layers=4, hidden=32, heads=4, kv_heads=2, head_dim=8, mlp=48,
                             vocab=97, activation="relu2", norm="layernorm1p", rotary_fraction=0.5,
                             max_positions=128, tied_embeddings=False),
    "llama": Architecture(family="llama", layers=4, hidden=32, heads=4, kv_heads=2, head_dim=8, mlp=40,
                          vocab=89, activation="silu", norm="rmsnorm", max_positions=128, tied_embeddings=True),
}


def tiny_model(family: str, seed: int = 0, **arch_changes) -> torch.nn.Module:
    """A tiny random decoder in float32 whose norms are perturbed (so LayerNorm1P/RMSNorm weights matter)."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(to_hf_config(TINY[family].replace(**arch_changes)), dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(params=["nemotron", "llama"])
def tiny(request) -> torch.nn.Module:
    return tiny_model(request.param)


@pytest.fixture(scope="session")
def smol():
    """The embedded default (SmolLM2-135M-Instruct), loaded once per session."""
    from analysis.models.loading import LoadConfig, load_model

    return load_model(LoadConfig(device="cpu"))


def save_tiny_dir(path, family: str, seed: int = 0, **arch_changes):
    """A tiny random model saved as a normal HF directory with the embedded default's tokenizer."""
    from analysis.models.loading import LoadConfig, cache_root, load_model, save_safetensors  # noqa: F401 - cache populated by `smol`

    model = tiny_model(family, seed=seed, vocab=49152, **arch_changes)
    path.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(path)
    save_safetensors(model, path)
    load_model(LoadConfig(device="cpu")).tokenizer.save_pretrained(path)
    return model


@pytest.fixture(params=["nemotron", "llama"])
def tiny_dir(request, tmp_path_factory):
    """(directory, model) of a tiny random model with a real tokenizer."""
    d = tmp_path_factory.mktemp(f"tiny-{request.param}")
    return d, save_tiny_dir(d, request.param)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls on a shared 2-core box: a second thread only adds spin-wait contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
