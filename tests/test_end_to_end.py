"""A user's whole loop on the embedded default (CPU), through real processes: analyze -> prune -> analyze."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM

from tests.helpers import cli_subprocess

pytestmark = pytest.mark.slow
SMALL = ("--samples", "4", "--eval-samples", "2", "--seq-len", "64", "--batch-size", "4")


def test_analyze_prune_analyze(tmp_path, smol):
    run = tmp_path / "run"
    r = cli_subprocess("analyze", "--device", "cpu", *SMALL, "--block-sizes", "1", "--no-figures", "--out", run)
    assert r.code == 0, r.err
    out = tmp_path / "pruned"
    r = cli_subprocess("prune", "--run", run, "--device", "cpu", "--hidden", "432", "--ffn", "1152", "--heads", "6",
                       "--layers", "23", "--depth-metric", "drop-loss", *SMALL, "--out", out)
    assert r.code == 0, r.err
    recipe = json.loads((out / "prune_recipe.json").read_text())
    assert recipe["importance_run"] == str(run) and recipe["ppl_after"] > recipe["ppl_before"] > 1
    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.lm_head.weight is model.model.embed_tokens.weight  # SmolLM2 ties its embeddings
    r = cli_subprocess("analyze", "--model", out, "--device", "cpu", *SMALL, "--block-sizes", "1", "--no-figures",
                       "--out", tmp_path / "run2")
    assert r.code == 0, r.err
