"""The experiments' library functions on tiny random models and synthetic analysis runs (seconds)."""

from __future__ import annotations

import copy
import math

import matplotlib.pyplot as plt
import pytest
import torch

from analysis.experiments import studies as ex
from analysis.importance.results import RunResult
from analysis.models.adapter import DecoderAdapter, param_count
from analysis.models.paper import AGGREGATION_LOSS
from analysis.models.registry import get
from analysis.training.loop import DistillConfig
from analysis.training.pipeline import distill
from figures import experiments as fx
from tests.helpers import TINY, synthetic_metrics, synthetic_tensors, tiny_model

CFG = DistillConfig(steps=2, seq_len=16, batch_size=2, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_every=1,
                    eval_samples=4, checkpoint_every=0, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher():
    return tiny_model("llama")


@pytest.fixture(scope="module")
def run(teacher, tmp_path_factory):
    """A synthetic analysis run shaped like the tiny teacher (every aggregation, BI, drop losses)."""
    arch = DecoderAdapter(teacher).arch
    tensors = synthetic_tensors(arch, block_sizes=(1, 2, 4))
    return RunResult(tmp_path_factory.mktemp("run"), tensors, synthetic_metrics(arch, tensors, "tiny-llama"))


def ids(n: int, vocab: int = TINY["llama"].vocab, t: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(seed))


def test_matched_targets_remove_about_the_same_parameters():
    teacher = get("smollm2-135m").arch
    total = teacher.params()["total"]
    for name, (axes, _) in ex.AXIS_VARIANTS.items():
        t = ex.matched_target(teacher, axes, 0.1)
        arch = teacher.replace(hidden=t.hidden, mlp=t.ffn, heads=t.heads, layers=t.layers)
        removed = total - arch.params()["total"]
        assert removed == pytest.approx(0.1 * total, rel=0.06), name  # heads and layers move in big steps
        assert arch.heads % teacher.kv_heads == 0


def test_paper_target_keeps_the_8b_width_ratios():
    t = ex.paper_target(get("smollm2-135m").arch, "8B")
    assert (t.hidden, t.ffn, t.heads, t.layers) == (384, 1024, 9, None)  # 2/3, 2/3, all heads, all layers


def test_aggregation_study_gives_nine_rows_with_the_paper_beside(teacher, run):
    res = ex.aggregation_study(teacher, run, ex.fraction_target(DecoderAdapter(teacher).arch, 0.5, 0.5, 0.5), ids(4))
    rows = res["rows"]
    assert len(rows) == 9 and {r["aggregation"] for r in rows} == {f"{b}_{s}" for b, s in AGGREGATION_LOSS}
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert len({r["params"] for r in rows}) == 1  # only the ranking changes between rows
    assert sorted(r["rank"] for r in rows) == list(range(1, 10))
    assert next(r for r in rows if r["aggregation"] == "l2_mean")["paper_loss_8t"] == 7.18
    assert -1 <= res["spearman_vs_paper"] <= 1
    plt.close(fx.aggregation_study(res))


def test_pruning_axes_zero_shot_rows(teacher, run):
    res = ex.pruning_axes(teacher, run, ids(4), None, CFG, fraction=0.25)
    assert [r["variant"] for r in res["rows"]] == list(ex.AXIS_VARIANTS)
    assert all(r["params"] < param_count(teacher) and math.isfinite(r["zero_shot_loss"]) for r in res["rows"])
    depth = [r for r in res["rows"] if r["axes"] == "depth"]
    assert {r["depth_metric"] for r in depth} == {"bi", "drop-loss"} and all(r["layers"] == 3 for r in depth)
    plt.close(fx.pruning_axes(res))


def test_pruning_axes_with_training(teacher, run):
    res = ex.pruning_axes(teacher, run, ids(4), ids(8, seed=2), CFG, fraction=0.25, variants=("mlp", "depth (BI)"))
    assert all(math.isfinite(r["distilled_loss"]) and r["distilled_kl"] >= 0 for r in res["rows"])
    plt.close(fx.pruning_axes(res))


def test_train_in_memory_matches_the_distill_loop(teacher, tmp_path):
    """Same student, config and windows: the in-memory loop reaches distill()'s held-out numbers."""
    student = tiny_model("llama", seed=3)
    train, held = ids(8, seed=2), ids(4)
    ours = ex.train_in_memory(teacher, copy.deepcopy(student), train, held, CFG)
    ref = distill(teacher, copy.deepcopy(student), train, held, CFG, tmp_path / "d", progress=False)
    assert ours["after"]["loss"] == pytest.approx(ref.evals[-1]["loss"], rel=1e-5)
    assert [e["step"] for e in ours["evals"]] == [e["step"] for e in ref.evals]


def test_distill_vs_finetune_two_steps(teacher):
    student = tiny_model("llama", seed=3)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    res = ex.distill_vs_finetune(teacher, student, ids(8, seed=2), ids(4), CFG)
    assert [r["mode"] for r in res["rows"]] == ["distill", "finetune"]
    assert all(math.isfinite(r["loss_after"]) for r in res["rows"])
    assert res["rows"][0]["loss_before"] == res["rows"][1]["loss_before"]  # same starting student
    assert all(len(c) == 3 for c in res["curves"].values())  # step 0, 1, 2
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())  # caller's copy untouched
    plt.close(fx.distill_vs_finetune(res))


def test_layer_drop_curves_shapes(run):
    res = ex.layer_drop_curves(run)
    L = len(run.tensors["block_importance"])
    assert res["sizes"] == [1, 2, 4] and res["num_layers"] == L
    assert len(res["rows"]) == sum(L - n + 1 for n in (1, 2, 4))
    row = next(r for r in res["rows"] if r["n"] == 2 and r["start"] == 1)
    assert row["end"] == 2
    assert row["delta"] == pytest.approx(float(run.tensors["drop_block_loss.n2"][1]) - run.metrics["eval"]["loss"])
    plt.close(fx.layer_drop_curves(res))


def test_pruning_methods_figure():
    plt.close(fx.pruning_methods())


def test_head_merge_study_pairs_the_same_windows(run):
    model = tiny_model("llama", heads=8, kv_heads=2)  # 4 heads per group: keep 3 and 1
    arch = DecoderAdapter(model).arch
    tensors = synthetic_tensors(arch, block_sizes=(1,))
    merge_run = RunResult(run.path, tensors, synthetic_metrics(arch, tensors, "tiny-llama"))
    eval_ids, train_ids = ids(6), ids(8, seed=2)
    res = ex.head_merge_study(model, merge_run, eval_ids, train_ids, CFG, keep=(3 / 4, 1 / 4), resamples=200)
    assert [(r["heads"], r["phase"]) for r in res["rows"]] == [
        (6, "zero-shot"), (6, "after 2 steps (seed 0)"), (2, "zero-shot"), (2, "after 2 steps (seed 0)")]
    from analysis.evaluation.loss import heldout
    from analysis.pruning.plan import PruneTarget, importance_from_run
    from analysis.pruning.surgery import prune_model

    imp = importance_from_run(merge_run, "l2_mean", "bi")
    for r in (res["rows"][0], res["rows"][2]):  # zero-shot numbers, measured independently
        for merged, key in ((True, "merged_loss"), (False, "plain_loss")):
            student = prune_model(model, PruneTarget(heads=r["heads"]), imp, head_merge=merged).model
            assert r[key] == pytest.approx(heldout(student, eval_ids).loss, rel=1e-6)
        assert r["diff"] == pytest.approx(r["merged_loss"] - r["plain_loss"])
        assert r["ci95"][0] <= r["diff"] <= r["ci95"][1] and r["windows"] == 6
    assert res["rows"][0]["pairs_per_layer"] == 2 and res["rows"][2]["pairs_per_layer"] == 2  # min(K, r - K) x 2 groups
    plt.close(fx.head_merge(res))
