"""The prune and search commands as a user runs them: exit codes, one-line errors, files written."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM

from tests.helpers import cli_subprocess, run_cli, tiny_model


def test_dry_run_and_impossible_target(tmp_path):
    r = run_cli("prune", "--model", "15B", "--target", "4B", "--dry-run", "--out", tmp_path / "4b")
    assert r.code == 0, r.err
    assert "params: 4190509056 (4.191B)" in r.out
    assert sorted(p.name for p in (tmp_path / "4b").iterdir()) == [".minitron-lab.json", "config.json", "prune_recipe.json"]
    r = run_cli("prune", "--model", "15B", "--heads", "44", "--dry-run", "--out", tmp_path / "bad")
    assert r.code == 2 and r.err.strip().count("\n") == 0 and "multiple of the 8 kv heads" in r.err
    assert not (tmp_path / "bad").exists()


def test_search_prints_count():
    r = run_cli("search", "--model", "15B", "--params", "4B")
    assert r.code == 0, r.err
    assert r.out.strip().endswith("18 candidates")


def test_search_8b_prints_table_19(tmp_path):
    from tests.pruning.test_search import TABLE19

    r = run_cli("search", "--model", "15B", "--params", "8B", "--out", tmp_path / "s")
    assert r.code == 0, r.err
    assert r.out.strip().endswith("15 candidates")
    rows = json.loads((tmp_path / "s" / "search.json").read_text())["candidates"]
    assert {(c["layers"], c["heads"], c["mlp_factor"], c["hidden"]) for c in rows} == TABLE19
    printed = {tuple(float(x) for x in line.split("│")[2:6]) for line in r.out.splitlines() if line.count("│") > 8}
    assert printed == {tuple(float(x) for x in (c[0], c[1], c[2], c[3])) for c in TABLE19}


def test_prune_local_directory_without_tokenizer(tmp_path):
    tiny_model("nemotron").save_pretrained(tmp_path / "teacher")
    r = run_cli("prune", "--model", tmp_path / "teacher", "--hidden", "24", "--heads", "2", "--layers", "3",
                "--no-eval", "--device", "cpu", "--out", tmp_path / "student")
    assert r.code == 0, r.err
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "student", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert (model.config.hidden_size, model.config.num_attention_heads, model.config.num_hidden_layers) == (24, 2, 3)
    recipe = json.loads((tmp_path / "student" / "prune_recipe.json").read_text())
    assert recipe["importance_run"] is None and recipe["aggregation"] == "none"
    assert recipe["head_merge"]["enabled"] and not recipe["head_merge"]["applied"]
    assert "no head scores" in recipe["head_merge"]["reason"]
    assert (tmp_path / "student" / "README.md").exists()  # the card, written by the CLI's export hook


@pytest.mark.slow
def test_prune_and_search_in_a_real_process(tmp_path):
    r = cli_subprocess("prune", "--model", "15B", "--target", "8B", "--dry-run", "--out", tmp_path / "8b")
    assert r.code == 0 and "params: 8271699968 (8.272B)" in r.out, r.err
    r = cli_subprocess("search", "--model", "15B", "--params", "8B")
    assert r.code == 0 and r.out.strip().endswith("candidates"), r.err


@pytest.mark.parametrize("flag, applied", [(None, True), ("--no-head-merge", False)])
def test_prune_records_head_merge(tmp_path, tiny_dirs, flag, applied, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the on-the-fly analysis writes runs/ under the working directory
    teacher, _ = tiny_dirs["llama"]
    args = ["prune", "--model", teacher, "--heads", "2", "--samples", "4", "--eval-samples", "2", "--seq-len", "16",
            "--device", "cpu", "--out", tmp_path / "student"] + ([flag] if flag else [])
    r = run_cli(*args)
    assert r.code == 0, r.err
    merge = json.loads((tmp_path / "student" / "prune_recipe.json").read_text())["head_merge"]
    assert merge["applied"] is applied and merge["enabled"] is applied
    if applied:  # 4 layers x 2 groups, 2 heads per group -> keep 1: one (kept, pruned) pair per group
        assert sorted(merge["pairs"]) == ["0", "1", "2", "3"] and all(len(p) == 2 for p in merge["pairs"].values())
        assert "§2.3" in merge["rule"] and "q_proj" in merge["weights"]
    else:
        assert merge["reason"] == "--no-head-merge"
