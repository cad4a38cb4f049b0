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


def test_usage_errors_are_one_line():
    r = run_cli("analyze", "--samples", "0")
    assert r.code == 2 and r.err.strip() == "error: --samples must be an integer in [1, 1000000], got 0"


def test_debug_shows_the_traceback_as_well():
    r = run_cli("--debug", "analyze", "--samples", "0")
    assert r.code == 2 and "Traceback" in r.err and r.err.strip().endswith("got 0")


def test_a_bug_of_ours_is_still_one_line_and_says_how_to_see_more(monkeypatch):
    from analysis.models import registry

    monkeypatch.setattr(registry, "MODELS", (object(),))
    r = run_cli("models", "--json")
    assert r.code == 1 and len(r.error_lines) == 1 and "Traceback" not in r.err
    assert "unexpected AttributeError" in r.err and "--debug" in r.err
