"""Done-when check of issue 5: analyze -> prune -> analyze the pruned directory, on the embedded default (CPU)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from transformers import AutoModelForCausalLM

from tests.test_cli_prune import cli

pytestmark = pytest.mark.skipif(importlib.util.find_spec("analysis.importance.collect") is None,
                                reason="analysis engine not merged yet")
SMALL = ("--samples", "4", "--eval-samples", "2", "--seq-len", "64", "--batch-size", "4")


def test_analyze_prune_analyze(tmp_path, smol):
    run = tmp_path / "run"
    r = cli("analyze", "--device", "cpu", *SMALL, "--block-sizes", "1", "--no-figures", "--out", str(run))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "pruned"
    r = cli("prune", "--run", str(run), "--device", "cpu", "--hidden", "432", "--ffn", "1152", "--heads", "6",
            "--layers", "23", "--depth-metric", "drop-loss", *SMALL, "--out", str(out))
    assert r.returncode == 0, r.stderr
    recipe = json.loads((out / "prune_recipe.json").read_text())
    assert recipe["importance_run"] == str(run) and recipe["ppl_after"] > recipe["ppl_before"] > 1
    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.lm_head.weight is model.model.embed_tokens.weight  # SmolLM2 ties its embeddings
    r = cli("analyze", "--model", str(out), "--device", "cpu", *SMALL, "--block-sizes", "1", "--no-figures",
            "--out", str(tmp_path / "run2"))
    assert r.returncode == 0, r.stderr
