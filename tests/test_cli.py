"""The command line itself: help, usage errors, and a real process for the commands not covered elsewhere.

Every command has one smoke test in a fresh interpreter (``cli_subprocess``): analyze in
test_end_to_end, prune and search in pruning/test_cli, card in cards/test_cards, distill in
training/test_loop, experiment in experiments/test_runner; models, figures and bench here. Error
paths run in-process (``run_cli``).
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import cli_subprocess, run_cli

COMMANDS = ("models", "analyze", "bench", "figures", "card", "distill", "prune", "search", "experiment")


def test_help_lists_every_command():
    r = run_cli("--help")
    assert r.code == 0 and all(c in r.out for c in COMMANDS)


def test_unknown_command_is_a_usage_error():
    r = run_cli("nonesuch")
    assert r.code == 2 and "No such command" in r.err


@pytest.mark.slow
def test_models_figures_and_bench_in_a_real_process(tmp_path, smol):
    r = cli_subprocess("models", "--json")
    assert r.code == 0 and {"minitron-8b", "smollm2-135m"} <= {m["name"] for m in json.loads(r.out)}
    r = cli_subprocess("figures", "--out", tmp_path / "fam")
    assert r.code == 0 and (tmp_path / "fam" / "mmlu_vs_tokens.png").exists(), r.err
    r = cli_subprocess("bench", "--seq-len", "8", "--batch-size", "1", "--steps", "1", "--warmup", "1", "--json")
    assert r.code == 0 and json.loads(r.out)["batch_size"] == 1, r.err
