"""Contiguous depth pruning (--depth-metric block): the cheapest block of layers goes, checked by hand."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from analysis.core.errors import MinitronError
from analysis.importance.results import load_run
from analysis.models.configs import to_hf_config
from analysis.pruning.plan import PruneTarget, importance_from_run, plan_for
from analysis.pruning.ranking import cheapest_block
from tests.helpers import SYNTHETIC, run_cli, synthetic_run


def _by_hand(losses: list[float], layers: int, k: int) -> list[int]:
    """The start with the smallest loss (first one on ties), its k layers removed."""
    best = 0
    for s in range(1, len(losses)):
        if losses[s] < losses[best]:
            best = s
    return [i for i in range(layers) if i < best or i >= best + k]


def test_cheapest_block_by_hand():
    losses = torch.tensor([4.0, 3.5, 3.2, 3.2, 5.0])  # 6 layers, blocks of 2; tie at 2 and 3: the earlier wins
    assert cheapest_block(losses, 6, 2) == _by_hand(losses.tolist(), 6, 2) == [0, 1, 4, 5]
    with pytest.raises(ValueError):
        cheapest_block(losses, 6, 3)


@pytest.mark.parametrize("layers", [7, 6, 4])  # removes blocks of 1, 2 and 4
def test_plan_removes_the_runs_cheapest_block(tmp_path, layers):
    run = load_run(synthetic_run(tmp_path / "run"))
    imp = importance_from_run(run, "l2_mean", "block")
    _, plan = plan_for(SYNTHETIC, PruneTarget(layers=layers), imp)
    k = SYNTHETIC.layers - layers
    assert plan.layers == _by_hand(run.tensors[f"drop_block_loss.n{k}"].tolist(), SYNTHETIC.layers, k)
    removed = sorted(set(range(SYNTHETIC.layers)) - set(plan.layers))
    assert removed == list(range(removed[0], removed[0] + k))  # one contiguous block


def test_block_size_the_run_did_not_measure_is_a_clear_error(tmp_path):
    imp = importance_from_run(load_run(synthetic_run(tmp_path / "run")), "l2_mean", "block")  # sizes 1, 2, 4, 8
    with pytest.raises(MinitronError, match="measured blocks of 1, 2, 4, 8; rerun analyze with --block-sizes including 3"):
        plan_for(SYNTHETIC, PruneTarget(layers=5), imp)


def test_prune_command_with_a_run(tmp_path):
    run = synthetic_run(tmp_path / "run")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(to_hf_config(SYNTHETIC)).save_pretrained(tmp_path / "teacher")
    r = run_cli("prune", "--model", tmp_path / "teacher", "--run", run, "--layers", "4", "--depth-metric", "block",
                "--no-eval", "--device", "cpu", "--out", tmp_path / "student")
    assert r.code == 0, r.err
    recipe = json.loads((tmp_path / "student" / "prune_recipe.json").read_text())
    want = _by_hand(load_run(run).tensors["drop_block_loss.n4"].tolist(), 8, 4)
    assert recipe["kept_layers"] == want and recipe["depth_metric"] == "block"
    start = next(i for i in range(8) if i not in want)
    assert recipe["removed_block"] == [start, start + 3]
    r = run_cli("prune", "--model", tmp_path / "teacher", "--run", run, "--layers", "5", "--depth-metric", "block",
                "--no-eval", "--device", "cpu", "--out", tmp_path / "bad")
    assert r.code == 2 and len(r.error_lines) == 1 and "--block-sizes including 3" in r.err
    assert not (tmp_path / "bad").exists()


def test_on_the_fly_analysis_measures_the_needed_block(tmp_path, tiny_dirs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher, _ = tiny_dirs["nemotron"]
    r = run_cli("prune", "--model", teacher, "--layers", "1", "--depth-metric", "block", "--samples", "4",
                "--eval-samples", "2", "--seq-len", "16", "--device", "cpu", "--out", tmp_path / "student")
    assert r.code == 0, r.err
    recipe = json.loads((tmp_path / "student" / "prune_recipe.json").read_text())
    losses = load_run(recipe["importance_run"]).tensors["drop_block_loss.n3"]  # 4 layers, 3 removed
    assert recipe["kept_layers"] == _by_hand(losses.tolist(), 4, 3)
