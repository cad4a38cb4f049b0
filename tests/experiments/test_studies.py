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

scipy_stats = pytest.importorskip("scipy.stats")

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


def test_paper_targets_on_the_embedded_default():
    arch = get("smollm2-135m").arch
    shape = lambda t: (t.hidden, t.ffn, t.heads, t.layers)
    assert shape(ex.paper_target(arch, "8B")) == (384, 1024, 9, None)  # 2/3, 2/3, all heads, all layers
    assert shape(ex.paper_target(arch, "study")) == (384, 1024, 6, None)  # Nemotron-3 8B: heads 32/48 -> 6 of 9
    assert shape(ex.paper_target(arch, "4B")) == (288, 576, 6, None)  # 24/48 of 9 = 4.5 -> 6 (whole GQA groups)


def test_paper_axes_shapes_follow_the_papers_table():
    """Width = the study target; depth keeps half the layers; the others match the width model's size."""
    arch = get("smollm2-135m").arch
    v = {name: x["target"] for name, x in ex.axes_targets(arch, "paper").items()}
    params = {n: arch.replace(hidden=t.hidden, mlp=t.ffn, heads=t.heads, layers=t.layers).params()["total"]
              for n, t in v.items()}
    width = v["width (mlp+heads+channels)"]
    assert (width.hidden, width.ffn, width.heads, width.layers) == (384, 1024, 6, 30)
    assert v["depth (BI)"].layers == v["depth (drop loss)"].layers == 15 and v["depth (BI)"].hidden == 576
    for name in ("width (mlp+heads)", "depth+width"):
        assert params[name] == pytest.approx(params["width (mlp+heads+channels)"], rel=0.03), name
    assert v["width (mlp+heads)"].hidden == 576 and v["depth+width"].layers < 30
    # the same proportions as the paper's: width keeps ~49.5% of Nemotron-4 15B, depth 16/32 keeps ~60%
    total = arch.params()["total"]
    assert params["width (mlp+heads+channels)"] / total == pytest.approx(7.735 / 15.629, abs=0.02)
    assert params["depth (BI)"] / total == pytest.approx(9.387 / 15.629, abs=0.02)


def test_aggregation_study_gives_nine_rows(teacher, run):
    ticks = []
    res = ex.aggregation_study(teacher, run, ex.fraction_target(DecoderAdapter(teacher).arch, 0.5, 0.5, 0.5), ids(4),
                               tick=ticks.append)
    rows = res["rows"]
    assert len(rows) == 9 and {r["aggregation"] for r in rows} == {f"{b}_{s}" for b, s in AGGREGATION_LOSS}
    assert all(math.isfinite(r["loss"]) for r in rows) and len(ticks) == 9 and all(t > 0 for t in ticks)
    assert res["params"] < param_count(teacher)


def test_pruning_axes_zero_shot_rows(teacher, run):
    variants = ex.axes_targets(DecoderAdapter(teacher).arch, "matched", 0.25)
    res = ex.pruning_axes(teacher, run, ids(4), None, CFG, variants)
    assert [r["variant"] for r in res["rows"]] == list(ex.AXIS_VARIANTS)
    assert all(math.isfinite(r["zero_shot_loss"]) for r in res["rows"])
    assert {variants[n]["target"].layers for n in ("depth (BI)", "depth (drop loss)")} == {3}


def test_pruning_axes_with_training(teacher, run):
    variants = ex.axes_targets(DecoderAdapter(teacher).arch, "paper")
    res = ex.pruning_axes(teacher, run, ids(4), ids(8, seed=2), CFG,
                          {k: variants[k] for k in ("width (mlp+heads+channels)", "depth (drop loss)")})
    assert all(math.isfinite(r["distilled_loss"]) and r["distilled_kl"] >= 0 for r in res["rows"])


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


def test_layer_drop_curves_shapes(run):
    res = ex.layer_drop_curves(run)
    L = len(run.tensors["block_importance"])
    assert sorted(res["deltas"], key=int) == ["1", "2", "4"]
    assert [len(res["deltas"][str(n)]) for n in (1, 2, 4)] == [L, L - 1, L - 3]
    assert res["deltas"]["2"][1] == pytest.approx(float(run.tensors["drop_block_loss.n2"][1]) - run.metrics["eval"]["loss"])
    ref = scipy_stats.spearmanr(run.tensors["block_importance"], run.tensors["drop_layer_loss"]).statistic
    assert res["spearman_bi_vs_drop_loss"] == pytest.approx(ref, abs=1e-6)


def test_pruning_methods_figure():
    plt.close(fx.pruning_methods())


def test_head_merge_measures_merged_and_plain_students_on_the_same_windows(run):
    """Zero-shot numbers equal an independent prune + held-out loss; training runs for both students."""
    from analysis.evaluation.loss import heldout
    from analysis.pruning.plan import PruneTarget, importance_from_run
    from analysis.pruning.surgery import prune_model

    model = tiny_model("llama", heads=8, kv_heads=2)  # 4 heads per group: keep 3 and 1
    arch = DecoderAdapter(model).arch
    tensors = synthetic_tensors(arch, block_sizes=(1,))
    merge_run = RunResult(run.path, tensors, synthetic_metrics(arch, tensors, "tiny-llama"))
    test_ids, train_ids = ids(CFG.eval_samples), ids(8, seed=2)  # the trainer scores its first eval_samples
    res = ex.head_merge(model, merge_run, test_ids, train_ids, CFG, heads=[6, 2])
    imp = importance_from_run(merge_run, "l2_mean", "bi")
    for n in (6, 2):
        row = res["targets"][str(n)]
        assert row["pairs_per_layer"] == 2  # min(K, r - K) per group x 2 groups
        for merged, key in ((True, "merged"), (False, "plain")):
            student = prune_model(model, PruneTarget(heads=n), imp, head_merge=merged).model
            assert row[key]["zero_shot_loss"] == pytest.approx(heldout(student, test_ids).loss, rel=1e-5)
            assert math.isfinite(row[key]["distilled_loss"])
        assert row["merged"]["zero_shot_loss"] != row["plain"]["zero_shot_loss"]  # merging changed the weights
