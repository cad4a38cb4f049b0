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


# --- published evaluation metadata --------------------------------------------------------------------
# The paper's settings (arXiv:2407.14679 evaluation section), typed here independently of the registry:
# benchmark -> (shots, lm-eval metric). The sixth benchmark is TruthfulQA, not TriviaQA.
PAPER_SETTINGS = {"winogrande": (5, "acc"), "arc_c": (25, "acc_norm"), "mmlu": (5, "acc"), "hellaswag": (10, "acc_norm"),
                  "gsm8k": (5, "acc"), "truthfulqa": (0, "mc2"), "xlsum": (3, "rougeL"), "mbpp": (0, "pass@1"),
                  "humaneval": (0, "pass@1")}
# Table 2 (15B, 8B) and Table 3 (4B) of arXiv v2, in the tables' column order.
PAPER_SCORES = {"nemotron-4-15b": (83.6, 58.8, 66.6, 84.6, 48.5, 40.7, 32.0, 38.0, 35.4),
                "minitron-8b": (79.0, 52.6, 63.8, 80.7, 51.3, 42.6, 31.2, 35.2, 31.6),
                "minitron-4b": (74.0, 50.9, 58.6, 75.0, 24.1, 42.9, 29.5, 28.2, 23.3)}


@pytest.mark.parametrize("name", sorted(PAPER_SCORES))
def test_published_evals_carry_the_papers_shots_metrics_and_tables(name):
    evals = get(name).evals
    assert [e.benchmark for e in evals] == list(PAPER_SETTINGS)  # the tables' column order
    assert tuple(e.value for e in evals) == PAPER_SCORES[name]
    for e in evals:
        assert (e.shots, e.metric) == PAPER_SETTINGS[e.benchmark], e.task
    table = "Table 3" if name == "minitron-4b" else "Table 2"
    assert {e.source for e in evals} == {f"arXiv:2407.14679v2 {table}"}
    assert "triviaqa" not in json.dumps(get(name).to_json()).lower()


def test_lm_eval_task_names_exist_in_the_harness():
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    from analysis.models.registry import BENCHMARKS

    known = set(TaskManager().all_tasks)
    for key, b in BENCHMARKS.items():
        assert b["lm_eval"] is None or b["lm_eval"] in known, key
    assert BENCHMARKS["xlsum"]["lm_eval"] is None  # the paper's own addition to the harness
