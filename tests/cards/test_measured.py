"""Measured evaluations in cards: found by fingerprint or name, the teacher beside with a paired difference,
labelled as ours in the text and in the model-index; the ranking-stability line of the compression section."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from analysis.evaluation.harness import EvalConfig, evaluate
from analysis.evaluation.results import load_evaluation
from analysis.importance.bootstrap import bootstrap
from analysis.models.loading import LoadConfig, save_safetensors
from cards import build, from_directory, render, write_cards
from tests.helpers import FIXTURES, SYNTHETIC, synthetic_metrics, synthetic_run, synthetic_tensors

TASK = FIXTURES / "lmeval" / "mc.yaml"

pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def measured(tiny_dirs, tmp_path_factory):
    """A teacher and a perturbed 'pruned' copy of it, each evaluated on the fixture task; runs under one root."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("measured")
    teacher_dir = tiny_dirs["llama"][0]
    student_dir = root / "student"
    shutil.copytree(teacher_dir, student_dir)
    model = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    save_safetensors(model, student_dir)
    runs = root / "runs"
    t_run = evaluate(EvalConfig(load=LoadConfig(model=str(teacher_dir), device="cpu"), tasks=(str(TASK),)),
                     out=runs / "teacher" / "eval-t")
    teacher_name = load_evaluation(t_run)[0]["model"]["name"]
    (student_dir / "prune_recipe.json").write_text(json.dumps({"teacher": teacher_name, "params": 1}))
    s_run = evaluate(EvalConfig(load=LoadConfig(model=str(student_dir), device="cpu"), tasks=(str(TASK),)),
                     out=runs / "student" / "eval-s")
    return student_dir, runs, t_run, s_run


def test_a_pruned_card_shows_its_measurement_and_the_teachers_with_a_paired_difference(measured):
    student_dir, runs, t_run, s_run = measured
    card = from_directory(student_dir, runs)
    (m,) = card.measured
    (t_doc, t_samples), (s_doc, s_samples) = load_evaluation(t_run), load_evaluation(s_run)
    key = str(TASK)
    assert m.value == pytest.approx(100 * s_doc["tasks"][key]["value"]) and m.percent and m.n == 10
    assert m.teacher.value == pytest.approx(100 * t_doc["tasks"][key]["value"])
    a = t_samples[key]["minitron_fixture_mc"]["acc,none"]
    b = s_samples[key]["minitron_fixture_mc"]["acc,none"]
    assert m.diff["value"] == pytest.approx(100 * (sum(b) - sum(a)) / len(a))
    assert m.diff["lo"] <= m.diff["value"] <= m.diff["hi"]
    text = render(card)
    section = text.split("## Measured evaluations")[1].split("## Inference")[0]
    assert "Measured by Minitron Lab" in section and "| teacher | difference (95% interval) |" in section
    assert f"{m.value:.2f}" in section and f"{m.teacher.value:.2f}" in section
    from huggingface_hub import ModelCard

    results = ModelCard(text).data.eval_results
    assert [r.metric_value for r in results] == [round(m.value, 4)]
    assert results[0].source_name.startswith("measured by Minitron Lab with lm-evaluation-harness")


def test_a_registry_card_puts_the_published_number_beside_ours(measured, tmp_path):
    t_run = measured[2]
    doc, samples = load_evaluation(t_run)
    t = doc["tasks"].pop(str(TASK))
    doc["tasks"]["arc_c"] = t | {"task": "arc_challenge", "shots": 25, "metric": "acc_norm,none",
                                 "value": t["metrics"]["acc_norm,none"]}
    doc["model"]["name"] = "minitron-8b"
    run = tmp_path / "runs" / "minitron-8b" / "eval-x"
    run.mkdir(parents=True)
    (run / "evaluation.json").write_text(json.dumps(doc))
    (run / "samples.json").write_text(json.dumps({"arc_c": samples[str(TASK)]}))
    card = build("8B", tmp_path / "runs")
    assert [m.task for m in card.measured] == ["arc_c"] and card.measured[0].published.value == 52.6
    section = render(card).split("## Measured evaluations")[1]
    assert "| 52.6 (" in section and "25-shot acc_norm" in section
    assert "## Measured evaluations" not in render(build("4B", tmp_path / "runs"))  # nothing measured: no section


def test_stability_line_and_figure_in_the_compression_section(tmp_path):
    tensors = synthetic_tensors(SYNTHETIC)
    metrics = synthetic_metrics(SYNTHETIC, tensors, name="minitron-8b")
    g = torch.Generator().manual_seed(0)
    L, H, F, D = SYNTHETIC.layers, SYNTHETIC.heads, SYNTHETIC.mlp, SYNTHETIC.hidden
    rows = {"heads": torch.rand(6, L, H, generator=g), "neurons": torch.rand(6, L, F, generator=g),
            "channels": torch.rand(6, L, 2, D, generator=g)}
    metrics["bootstrap"] = bootstrap(rows, SYNTHETIC.kv_heads, iters=20)
    from analysis.importance.results import write_run

    write_run(tmp_path / "runs" / "minitron-8b" / "r1", tensors, metrics)
    readme = write_cards(["8B"], out=tmp_path / "card", runs_root=tmp_path / "runs")[0]
    section = readme.read_text().split("## Compression analysis")[1]
    assert "**Ranking stability:** over 20 bootstrap resamples of the 6 calibration windows" in section
    assert "at the 8B ratios" in section and "(figures/ranking_stability.png)" in section
    assert (readme.parent / "figures" / "ranking_stability.png").exists()
    synthetic_run(tmp_path / "plain" / "minitron-8b" / "r1", name="minitron-8b")
    assert "Ranking stability" not in write_cards(["8B"], out=tmp_path / "c2", runs_root=tmp_path / "plain")[0].read_text()
