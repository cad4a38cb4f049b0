"""Ranking search candidates after retraining: zero-shot part against heldout, order statistics, the command."""

from __future__ import annotations

import json

import pytest
import torch

from analysis.data import DataConfig
from analysis.evaluation.loss import heldout
from analysis.importance.pipeline import AnalysisConfig, run_analysis
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadConfig
from analysis.pruning.plan import Importance
from analysis.pruning.search import SearchSpace, enumerate_candidates
from analysis.pruning.surgery import prune_model
from analysis.training.loop import DistillConfig
from analysis.training.search import order_agreement, rank_after_retraining
from tests.helpers import random_ids, run_cli, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rank_after_retraining_on_a_tiny_model():
    model = tiny_model("nemotron")
    with torch.no_grad():  # stronger layers, so pruning costs something training can win back
        for p in model.parameters():
            p.mul_(5.0 if p.ndim == 2 else 1.0)
    arch = DecoderAdapter(model).arch
    space = SearchSpace(name="tiny", layers=(3, 4), heads=(2, 4), mlp_factors=(1.0,), mlp_ratio=1.0, hidden=(24, 32),
                        budget=arch.params()["total"])
    cands = enumerate_candidates(arch, space, tolerance=0.4)
    g = torch.Generator().manual_seed(0)
    imp = Importance(channels=torch.rand(32, generator=g), heads=torch.rand(4, 4, generator=g),
                     neurons=torch.rand(4, 48, generator=g), depth=torch.rand(4, generator=g))
    train_ids, eval_ids = random_ids(97, 32), random_ids(97, 4, seed=2)
    cfg = DistillConfig(steps=4, seq_len=16, batch_size=4, lr=3e-3, min_lr=3e-4, warmup_steps=1, eval_every=0,
                        eval_samples=4, checkpoint_every=0, device="cpu")
    rows = rank_after_retraining(model, cands, imp, train_ids, eval_ids, cfg)
    assert [tuple(r["candidate"]) for r in rows] == [c.key for c in cands]
    for c, r in zip(cands, rows):  # zero-shot = the held-out loss of the pruned model, measured independently
        assert r["zero_shot_loss"] == pytest.approx(heldout(prune_model(model, c.target(), imp).model, eval_ids).loss,
                                                    rel=1e-5)
    assert sum(r["retrained_kl"] < r["zero_shot_kl"] for r in rows) >= len(rows) - 1  # training moved them to the teacher


def test_order_agreement_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    zero = [3.1, 2.9, 3.5, 3.0, 4.2, 3.3]
    after = [2.2, 2.4, 2.5, 2.1, 2.9, 2.3]
    a = order_agreement(zero, after, resamples=500)
    assert a["spearman"] == pytest.approx(stats.spearmanr(zero, after).statistic)
    assert a["kendall"] == pytest.approx(stats.kendalltau(zero, after).statistic)
    assert a["spearman_ci95"][0] <= a["spearman"] <= a["spearman_ci95"][1]
    assert not a["same_best"] and a["retrained_best_zero_shot_rank"] == 2  # 3.0 is second best zero-shot


def test_search_command_ranks_and_writes_search_json(tmp_path, tiny_dirs):
    teacher, model = tiny_dirs["llama"]
    data = DataConfig(seq_len=16, calib_samples=4, eval_samples=2)
    run = run_analysis(AnalysisConfig(load=LoadConfig(model=str(teacher), device="cpu"), data=data, block_sizes=(1,)),
                       out=tmp_path / "run")
    budget = str(int(0.9 * DecoderAdapter(model).arch.params()["total"]))
    r = run_cli("search", "--model", teacher, "--params", budget, "--tolerance", "0.1", "--rank", "--run", run,
                "--retrain-steps", "2", "--seq-len", "16", "--eval-samples", "2", "--device", "cpu",
                "--out", tmp_path / "search")
    assert r.code == 0, r.err
    doc = json.loads((tmp_path / "search" / "search.json").read_text())
    n = len(doc["candidates"])
    assert n >= 3 and r.out.strip().endswith(f"{n} candidates") and "zero-shot vs retrained order" in r.out
    ranking = doc["ranking"]
    assert ranking["order_by"] == "retrained_loss" and ranking["retrain"]["steps"] == 2
    assert len(ranking["rows"]) == n and ranking["agreement"]["candidates"] == n
    assert ranking["data"]["eval_windows"] and ranking["importance_run"] == str(run)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not ours")
    r = run_cli("search", "--model", teacher, "--params", budget, "--rank", "--out", tmp_path / "mine")
    assert r.code == 2 and "--force" in r.err  # the output contract, checked before any work
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    r = run_cli("search", "--model", teacher, "--params", budget, "--rank", "--retrain-steps", "0")
    assert r.code == 2 and len(r.error_lines) == 1 and "--rank needs --run" in r.err
    r = run_cli("search", "--model", teacher, "--params", budget, "--tolerance", "0.1", "--rank", "--run", run,
                "--retrain-steps", "0", "--seq-len", "16", "--eval-samples", "4", "--device", "cpu")
    assert r.code == 2 and len(r.error_lines) == 1 and "overlap the calibration windows" in r.err


def test_zero_shot_order_is_kept_as_an_option(tmp_path, tiny_dirs):
    teacher, model = tiny_dirs["nemotron"]
    data = DataConfig(seq_len=16, calib_samples=4, eval_samples=2)
    run = run_analysis(AnalysisConfig(load=LoadConfig(model=str(teacher), device="cpu"), data=data, block_sizes=(1,)),
                       out=tmp_path / "run")
    budget = str(int(0.9 * DecoderAdapter(model).arch.params()["total"]))
    r = run_cli("search", "--model", teacher, "--params", budget, "--tolerance", "0.1", "--rank", "--run", run,
                "--retrain-steps", "0", "--seq-len", "16", "--eval-samples", "2", "--device", "cpu",
                "--out", tmp_path / "search")
    assert r.code == 0, r.err
    ranking = json.loads((tmp_path / "search" / "search.json").read_text())["ranking"]
    assert ranking["retrain"] is None and ranking["order_by"] == "zero_shot_loss" and ranking["agreement"] is None
    losses = [row["zero_shot_loss"] for row in ranking["rows"]]
    assert all(row["retrained_loss"] == row["zero_shot_loss"] for row in ranking["rows"]) and len(set(losses)) > 1
