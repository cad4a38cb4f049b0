"""The prune and search commands end to end, through a real subprocess (exit codes, one-line errors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM

from tests.conftest import tiny_model

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_dry_run_and_impossible_target(tmp_path):
    r = cli("prune", "--model", "15B", "--target", "4B", "--dry-run", "--out", str(tmp_path / "4b"))
    assert r.returncode == 0, r.stderr
    assert "params: 4190509056 (4.191B)" in r.stdout
    assert sorted(p.name for p in (tmp_path / "4b").iterdir()) == ["config.json", "prune_recipe.json"]
    r = cli("prune", "--model", "15B", "--heads", "44", "--dry-run", "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "multiple of the 8 kv heads" in r.stderr
    assert not (tmp_path / "bad").exists()


def test_search_prints_count():
    r = cli("search", "--model", "15B", "--params", "4B")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("18 candidates")


def test_prune_local_directory_without_tokenizer(tmp_path):
    tiny_model("nemotron").save_pretrained(tmp_path / "teacher")
    r = cli("prune", "--model", str(tmp_path / "teacher"), "--hidden", "24", "--heads", "2", "--layers", "3",
            "--no-eval", "--device", "cpu", "--out", str(tmp_path / "student"))
    assert r.returncode == 0, r.stderr
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "student", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert (model.config.hidden_size, model.config.num_attention_heads, model.config.num_hidden_layers) == (24, 2, 3)
    recipe = json.loads((tmp_path / "student" / "prune_recipe.json").read_text())
    assert recipe["importance_run"] is None and recipe["aggregation"] == "none"
