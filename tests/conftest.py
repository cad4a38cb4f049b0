"""Fixtures shared by every test package. Expensive ones (the embedded default, tiny model directories)
are built once per session; helpers that are plain functions live in ``tests/helpers.py``."""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest
import torch

from tests.helpers import FAMILIES, save_tiny_dir, tiny_model, train_bpe

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(params=FAMILIES)
def tiny(request) -> torch.nn.Module:
    """A fresh tiny random decoder of each family (cheap: tests may change it)."""
    return tiny_model(request.param)


@pytest.fixture(scope="session")
def smol():
    """The embedded default (SmolLM2-135M-Instruct), loaded once per session."""
    from analysis.models.loading import LoadConfig, load_model

    return load_model(LoadConfig(device="cpu"))


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory, smol) -> dict:
    """family -> (directory, model): tiny random models with the default's tokenizer, saved once. Read-only."""
    out = {}
    for family in FAMILIES:
        d = tmp_path_factory.mktemp(f"tiny-{family}")
        out[family] = (d, save_tiny_dir(d, family, smol.tokenizer))
    return out


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory):
    """(directory, model): a tiny llama with a BPE tokenizer trained on pydoc; needs no embedded default
    (the GPU image cannot read its GGUF). Read-only."""
    d = tmp_path_factory.mktemp("tiny-bpe")
    return d, save_tiny_dir(d, "llama", train_bpe(1024))


@pytest.fixture(params=FAMILIES)
def tiny_dir(request, tiny_dirs):
    """(directory, model) of each family's saved tiny model (shared: do not write into it)."""
    return tiny_dirs[request.param]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls on a shared 2-core box: a second thread only adds spin-wait contention."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
