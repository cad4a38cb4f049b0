"""Experiments over seeds at the CI scale: disjoint windows per seed, numbers recomputed independently, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from analysis.data import DataConfig, read_stream
from analysis.evaluation.loss import heldout
from analysis.experiments.runner import run_experiments
from analysis.experiments.setup import SMALL
from analysis.models.loading import LoadConfig, load_model
from tests.helpers import cli_subprocess, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")
SEEDS = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """layer-drop and aggregation over two seeds at the CI scale: (runs dir, results dir, documents)."""
    base = tmp_path_factory.mktemp("experiments")
    paths = run_experiments(["layer-drop", "aggregation"], SMALL, SEEDS, runs=base / "runs", out=base / "results",
                            progress=False)
    return base / "runs", base / "results", {p.stem: json.loads(p.read_text()) for p in paths}


def _spans(record: dict, role: str) -> set[int]:
    """Every token index a role's windows cover (naive: no sweep, no shared helper)."""
    T = record["seq_len"]
    return {t for w in record[role]["windows"] for t in range(w * T, (w + 1) * T)}


def test_every_seed_keeps_its_four_window_sets_apart(results):
    runs, _, docs = results
    for doc in docs.values():
        assert doc["seeds"] == list(range(SEEDS))
        windows = []
        for seed in doc["per_seed"]:
            rec = seed["splits"]
            calib, select, test, train = (_spans(rec, r) for r in ("calibration", "selection", "evaluation", "training"))
            assert len(test) == SMALL.test_samples * SMALL.seq_len and rec["seed"] == seed["seed"]
            assert not (test & calib) and not (test & select) and not (test & train) and not (calib & select)
            assert not (train & select)
            metrics = json.loads((runs / f"small-seed{seed['seed']}" / "metrics.json").read_text())["data"]
            assert rec["selection"]["windows"] == metrics["eval_windows"]  # what the analysis ranked layers on
            assert rec["calibration"]["windows"] == metrics["calib_windows"]
            windows.append(rec["evaluation"]["windows"])
        assert windows[0] != windows[1]  # each seed draws its own windows


def test_reported_losses_are_measured_on_the_recorded_evaluation_windows(results):
    runs, _, docs = results
    loaded = load_model(LoadConfig(model=str(runs / "model-small"), device="cpu"))
    stream, _ = read_stream(loaded.tokenizer, DataConfig())
    T = SMALL.seq_len
    windows = stream[: len(stream) // T * T].view(-1, T)
    for seed in docs["aggregation"]["per_seed"]:
        assert seed["splits"]["stream_sha256"] == docs["aggregation"]["per_seed"][0]["splits"]["stream_sha256"]
        ids = windows[torch.tensor(seed["splits"]["evaluation"]["windows"])]
        assert seed["teacher_loss"] == pytest.approx(heldout(loaded.model, ids).loss, abs=1e-5)


def test_documents_carry_provenance_and_the_teacher(results):
    _, out, docs = results
    doc = docs["aggregation"]
    assert {"versions", "git_commit", "created", "interval", "timing", "settings", "scale"} <= set(doc)
    assert "Q4_1" in doc["model"]["note"] and "dequantize" in doc["model"]["note"]
    assert doc["timing"]["elapsed_s"] > 0 and len(doc["timing"]["analysis_s"]) == SEEDS
    assert set(doc["settings"]["targets"]) == {"minitron-8b", "study (nemotron-3 8b)", "minitron-4b"}
    assert sorted(p.name for p in out.iterdir()) == [".minitron-lab.json", "aggregation.json", "layer-drop.json"]
    assert max(p.stat().st_size for p in out.glob("*.json")) < 20_000  # a few KB each


def test_cli_estimate_writes_nothing_and_bad_names_are_one_line(results, tmp_path):
    runs, _, _ = results
    r = run_cli("experiment", "aggregation", "--small", "--seeds", "2", "--estimate", "--runs", runs,
                "--out", tmp_path / "res")
    assert r.code == 0 and "about" in r.err and "min on this machine" in r.err, r.err
    assert not (tmp_path / "res").exists()
    for args, message in ((("nonesuch",), "unknown experiment 'nonesuch'"), ((), "name an experiment"),
                          (("aggregation", "--seeds", "0"), "--seeds must be an integer in [1, 1000], got 0")):
        r = run_cli("experiment", *args, "--small", "--runs", runs, "--out", tmp_path / "res")
        assert r.code == 2 and len(r.error_lines) == 1 and message in r.error_lines[0], r.err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "thesis.tex").write_text("x")
    r = run_cli("experiment", "aggregation", "--small", "--runs", runs, "--out", tmp_path / "taken")
    assert r.code == 2 and "--force" in r.err and (tmp_path / "taken" / "thesis.tex").read_text() == "x"


def test_a_second_experiment_keeps_the_first_ones_file(results, tmp_path):
    """The results folder collects experiments one command at a time (output contract, keep_ours)."""
    runs, out, _ = results
    before = (out / "aggregation.json").read_bytes()
    r = run_cli("experiment", "layer-drop", "--small", "--seeds", "1", "--runs", runs, "--out", out)
    assert r.code == 0, r.err
    assert (out / "aggregation.json").read_bytes() == before
    assert json.loads((out / "layer-drop.json").read_text())["seeds"] == [0]
    marker = json.loads((out / ".minitron-lab.json").read_text())
    assert sorted(marker["files"]) == ["aggregation.json", "layer-drop.json"]


def test_figures_draw_from_the_documents(results):
    import matplotlib.pyplot as plt

    from figures import experiments as fx

    _, _, docs = results
    for fig in (fx.layer_drop_curves(docs["layer-drop"]), fx.aggregation_study(docs["aggregation"])):
        title = fig.get_suptitle() or fig.axes[0].get_title()
        assert f"over {SEEDS} seeds" in title and "CI scale" in title
        assert any(ax.get_xlabel() for ax in fig.axes)
        plt.close(fig)


@pytest.mark.slow
def test_experiment_in_a_real_process(tmp_path):
    r = cli_subprocess("experiment", "layer-drop", "--small", "--seeds", "1", "--runs", tmp_path / "runs",
                       "--out", tmp_path / "out")
    assert r.code == 0, r.err
    assert r.out.strip().endswith("layer-drop.json") and "min on this machine" in r.err
    assert json.loads((tmp_path / "out" / "layer-drop.json").read_text())["seeds"] == [0]
