"""The registry: parameter counts against published numbers, a naive count and meta models; names."""

import json

import pytest
import torch

from analysis.core.errors import MinitronError
from analysis.models.adapter import param_count
from analysis.models.configs import from_hf_config, to_hf_config
from analysis.models.loading import LoadConfig, load_model
from analysis.models.registry import MODELS, get
from tests.helpers import run_cli

# Published counts (the Minitron paper's architecture table and the models' cards), in billions: total, non-embedding.
PUBLISHED = {
    "nemotron-4-15b": (15.629, 12.483), "minitron-8b": (8.272, 6.175), "minitron-4b": (4.191, 2.618),
    "llama-3.1-minitron-4b-width": (4.513, None), "llama-3.1-minitron-4b-depth": (4.540, None),
    "mistral-nemo-minitron-8b": (8.414, None),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_match_published(name):
    total, non_emb = PUBLISHED[name]
    p = get(name).arch.params()
    assert abs(p["total"] / 1e9 - total) / total < 1e-3
    if non_emb:
        assert abs(p["non_embedding"] / 1e9 - non_emb) / non_emb < 1e-3


def _naive_count(arch) -> int:
    """Count by listing every weight matrix and vector, independently of Architecture.params."""
    shapes = [(arch.vocab, arch.hidden)] + ([] if arch.tied_embeddings else [(arch.vocab, arch.hidden)])
    for _ in range(arch.layers):
        shapes += [(arch.heads * arch.head_dim, arch.hidden), (arch.kv_heads * arch.head_dim, arch.hidden),
                   (arch.kv_heads * arch.head_dim, arch.hidden), (arch.hidden, arch.heads * arch.head_dim)]
        shapes += [(arch.mlp, arch.hidden)] * (2 if arch.gated_mlp else 1) + [(arch.hidden, arch.mlp)]
        shapes += [(arch.hidden,)] * (4 if arch.norm == "layernorm1p" else 2)
    shapes += [(arch.hidden,)] * (2 if arch.norm == "layernorm1p" else 1)
    return sum(torch.Size(s).numel() for s in shapes)


@pytest.mark.parametrize("spec", MODELS, ids=lambda s: s.name)
def test_counts_formula_and_meta_model_agree(spec):
    assert spec.arch.params()["total"] == _naive_count(spec.arch)
    lm = load_model(LoadConfig(model=spec.name, random_init=True, device="meta"))
    assert param_count(lm.model) == spec.arch.params()["total"]
    assert from_hf_config(to_hf_config(spec.arch)) == spec.arch


def test_minitron_4b_has_24_heads_and_32_would_miss_the_count():
    arch = get("4B").arch
    assert arch.heads == 24
    assert abs(arch.replace(heads=32).params()["total"] / 1e9 - 4.392) < 1e-3


def test_aliases_are_case_insensitive():
    assert get("8b").name == get("8B").name == get("Minitron-8B").name == "minitron-8b"
    assert get("nvidia/minitron-4b-base").name == "minitron-4b"
    assert get("15b").role == "teacher"


def test_unknown_name_lists_valid_names():
    with pytest.raises(MinitronError, match="unknown model 'gpt5'.*minitron-8b"):
        get("gpt5")


def test_cli_models_json():
    result = run_cli("models", "--json")
    assert result.code == 0
    entries = {e["name"]: e for e in json.loads(result.out)}
    assert {"nemotron-4-15b", "minitron-8b", "minitron-4b", "smollm2-135m"} <= set(entries)
    e = entries["minitron-8b"]
    assert {"name", "aliases", "role", "hf_id", "architecture", "license", "params_total",
            "params_non_embedding"} <= set(e)
    assert e["params_total"] == 8271699968 and e["aliases"] == ["8B", "minitron-8b-base"]
    assert e["architecture"]["layers"] == 32 and e["architecture"]["rotary_fraction"] == 0.5
