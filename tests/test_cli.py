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

COMMANDS = ("models", "analyze", "bench", "perplexity", "figures", "card", "distill", "prune", "search", "experiment",
            "evaluate", "compare")


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


def test_typer_exit_inside_a_command_is_its_exit_code(tmp_path):
    """``experiment --report --check`` on an out-of-date README raises typer.Exit(1): exit 1, one line, no traceback."""
    (tmp_path / "res").mkdir()
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:begin -->\nstale\n<!-- results:end -->\n")
    r = run_cli("experiment", "--report", "--check", "--out", tmp_path / "res", "--readme", readme)
    assert r.code == 1 and "is out of date" in r.err and "Traceback" not in r.err, r.err
    assert readme.read_text().count("stale") == 1  # --check changes nothing


def test_click_without_exit_or_abort_falls_back_to_typers_own(monkeypatch, tmp_path):
    """typer's vendored click keeps Exit and Abort elsewhere; a missing name must never become an AttributeError
    that hides the real outcome."""
    import types

    import typer
    import typer._click

    import cli

    real = typer._click.exceptions
    monkeypatch.setattr(typer._click, "exceptions", types.SimpleNamespace(ClickException=real.ClickException))
    assert cli._click_exceptions() == (real.ClickException, typer.Abort, typer.Exit)
    assert run_cli("analyze", "--sample", "3").code == 2  # a usage error still caught as one
    test_typer_exit_inside_a_command_is_its_exit_code(tmp_path)


@pytest.mark.slow
def test_a_closed_stdout_pipe_is_quiet(tmp_path):
    """``python cli.py search ... | head`` when head has already exited: no traceback, no 'Exception ignored'."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes
    try:
        r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "search", "--model", "15B", "--params", "8B"],
                           stdout=write, stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    finally:
        os.close(write)
    assert r.returncode == 1 and r.stderr == "", r.stderr
