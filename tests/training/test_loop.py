"""The training loop: schedule, data order, distillation on tiny models, resume, the distill command."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from analysis.core.errors import MinitronError
from analysis.models.adapter import DecoderAdapter
from analysis.training.loop import DistillConfig, batch_indices, lr_at, make_optimizer
from analysis.training.pipeline import distill
from tests.helpers import cli_subprocess, random_ids, run_cli, tiny_model

TINY_CFG = DistillConfig(steps=6, seq_len=16, batch_size=4, lr=1e-3, min_lr=1e-4, warmup_steps=3,
                         eval_every=3, eval_samples=8, checkpoint_every=3, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def save_subset(model, keep, path: Path) -> Path:
    """A student directory holding only the layers in ``keep`` (what depth pruning produces)."""
    with DecoderAdapter(model).keep_layers(keep):
        model.save_pretrained(path)
    return path


def load(path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


@pytest.fixture
def pair(tmp_path):
    """Tiny llama teacher, a student directory without layer 2, and random windows.

    Matrices are scaled up 6x: at the 0.02 init the layers barely act, so dropping one changes the
    logits by almost nothing (KL ~ 1e-3) and there is nothing for distillation to recover.
    """
    teacher = tiny_model("llama")
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(6.0 if p.ndim == 2 else 1.0)
    student_dir = save_subset(teacher, [0, 1, 3], tmp_path / "student")
    vocab = teacher.config.vocab_size
    return teacher, student_dir, random_ids(vocab, 64), random_ids(vocab, 8, seed=2)


# --- schedule and data order ----------------------------------------------------------------------
def test_schedule_warmup_then_cosine_to_min_lr():
    cfg = DistillConfig(steps=20, lr=1e-3, min_lr=1e-4, warmup_steps=5)
    opt, sched = make_optimizer(torch.nn.Linear(3, 3), cfg)
    seen = []
    for _ in range(cfg.steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    want = [1e-3 * (s + 1) / 5 for s in range(5)] + [
        1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * (s - 5) / 14)) for s in range(5, 20)]
    assert seen == pytest.approx(want, rel=1e-9)
    assert seen[4] == pytest.approx(1e-3) and seen[-1] == pytest.approx(1e-4)
    assert [lr_at(s, cfg) for s in range(20)] == pytest.approx(want, rel=1e-12)


def test_batch_order_covers_each_window_once_per_epoch():
    cfg = DistillConfig(batch_size=2, grad_accum=2, seed=3)
    order = torch.cat([batch_indices(s, m, 8, cfg) for s in range(4) for m in range(2)])
    assert sorted(order[:8].tolist()) == list(range(8)) == sorted(order[8:].tolist())
    assert order[:8].tolist() != order[8:].tolist()  # a new order each epoch
    assert torch.equal(batch_indices(1, 1, 8, cfg), order[6:8])  # pure function of (step, micro)


# --- the loop -------------------------------------------------------------------------------------
def test_distillation_lowers_heldout_kl_and_exports_loadable_dir(pair, tmp_path):
    teacher, student_dir, train, held = pair
    cfg = replace(TINY_CFG, steps=30, eval_every=0)
    result = distill(teacher, load(student_dir), train, held, cfg, tmp_path / "run", progress=False)
    before, after = result.final["before"], result.final["after"]
    assert after["kl"] < 0.5 * before["kl"] and after["teacher_loss"] == pytest.approx(before["teacher_loss"])
    reloaded, info = AutoModelForCausalLM.from_pretrained(result.model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert reloaded.config.num_hidden_layers == 3 and (result.model_dir / "generation_config.json").exists()
    record = json.loads((tmp_path / "run" / "distill.json").read_text())
    assert record["mode"] == "distill" and len(record["history"]) == 30
    assert record["final"]["after"]["kl"] == pytest.approx(after["kl"])


def test_resume_reaches_the_same_weights(pair, tmp_path):
    teacher, student_dir, train, held = pair
    straight = distill(teacher, load(student_dir), train, held, TINY_CFG, tmp_path / "a", progress=False)
    part = distill(teacher, load(student_dir), train, held, TINY_CFG, tmp_path / "b", progress=False, stop_after=3)
    assert not part.finished and len(part.history) == 3
    resumed = distill(teacher, load(student_dir), train, held, TINY_CFG, tmp_path / "b", progress=False, resume=True)
    a, b = load(straight.model_dir).state_dict(), load(resumed.model_dir).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-7, rtol=0)
    assert [h["loss"] for h in straight.history] == pytest.approx([h["loss"] for h in resumed.history], abs=1e-7)


def test_rerun_without_resume_or_with_other_config_fails(pair, tmp_path):
    teacher, student_dir, train, held = pair
    distill(teacher, load(student_dir), train, held, TINY_CFG, tmp_path / "r", progress=False, stop_after=3)
    with pytest.raises(MinitronError, match="--resume"):
        distill(teacher, load(student_dir), train, held, TINY_CFG, tmp_path / "r", progress=False)
    with pytest.raises(MinitronError, match="lr differ"):
        distill(teacher, load(student_dir), train, held, replace(TINY_CFG, lr=0.5), tmp_path / "r",
                progress=False, resume=True)
    with pytest.raises(MinitronError, match="windows differ"):
        distill(teacher, load(student_dir), train[1:], held, TINY_CFG, tmp_path / "r", progress=False, resume=True)


def test_finetune_mode_lowers_heldout_loss_without_teacher_loss(pair, tmp_path):
    teacher, student_dir, train, _ = pair
    cfg = replace(TINY_CFG, eval_every=0).finetune()
    result = distill(teacher, load(student_dir), train, train[:8], cfg, tmp_path / "ft", progress=False)
    assert cfg.mode == "finetune" and all(h["kd"] == 0 for h in result.history)
    assert result.final["after"]["loss"] < result.final["before"]["loss"]  # train windows: it must fit them


def test_mismatched_vocab_and_shared_weights_fail_cleanly(tmp_path):
    teacher = tiny_model("llama")
    ids = random_ids(50, 8)
    with pytest.raises(MinitronError, match=r"vocabulary \(89\).*\(97\)"):
        distill(teacher, tiny_model("nemotron"), ids, ids, TINY_CFG, tmp_path / "v", progress=False)
    with pytest.raises(MinitronError, match="shares parameters"):
        distill(teacher, teacher, ids, ids, TINY_CFG, tmp_path / "s", progress=False)
    assert not (tmp_path / "v").exists()


# --- windows: training and held-out never meet, nor held-out and the pruning analysis -----------------
def test_training_splits_keep_held_out_windows_off_training_and_pruning_windows(smol):
    from analysis.data import DataConfig, make_splits, read_stream, split_record
    from analysis.training.pipeline import training_splits

    data = DataConfig(seed=4, eval_samples=3)
    stream, _ = read_stream(smol.tokenizer, data)
    # the student's pruning analysis cut the same text at length 24 (a recipe's splits.importance)
    used = split_record(make_splits(stream, DataConfig(seq_len=24, calib_samples=900, eval_samples=300, seed=9))
                        .meta, ("calib", "eval"))
    cfg = replace(TINY_CFG, steps=50, eval_samples=30)
    s = training_splits(smol.tokenizer, data, cfg, avoid=used)
    T = cfg.seq_len
    train, test = set(s.meta["calib_windows"]), s.meta["test_windows"]
    assert len(train) == 50 * 4 and len(test) == 30 and not train & set(test)
    assert not set(s.meta["eval_windows"]) & train  # the selection windows are skipped, not trained on
    taken = [(w * 24, (w + 1) * 24) for w in used["calibration"]["windows"] + used["selection"]["windows"]]
    assert all(b1 <= a0 or a1 <= b0 for w in test for a0, a1 in [(w * T, (w + 1) * T)] for b0, b1 in taken)
    assert torch.equal(s.test[0], stream[test[0] * T:(test[0] + 1) * T])


# --- command line ---------------------------------------------------------------------------------
def test_cli_mismatched_vocab_is_one_line_error(tmp_path):
    tiny_model("llama").save_pretrained(tmp_path / "t")
    tiny_model("nemotron").save_pretrained(tmp_path / "s")
    r = run_cli("distill", "--teacher", tmp_path / "t", "--student", tmp_path / "s", "--device", "cpu",
                "--out", tmp_path / "out")
    assert r.code == 2 and not (tmp_path / "out").exists()
    assert len(r.error_lines) == 1 and "vocabulary (89)" in r.error_lines[0]


@pytest.mark.slow
def test_cli_distill_writes_a_model_directory(tmp_path, smol):
    teacher = tiny_model("llama", vocab=len(smol.tokenizer))
    teacher.save_pretrained(tmp_path / "teacher")
    smol.tokenizer.save_pretrained(tmp_path / "teacher")
    save_subset(teacher, [0, 2, 3], tmp_path / "student")
    (tmp_path / "student" / "prune_recipe.json").write_text('{"kept_layers": [0, 2, 3]}')
    (tmp_path / "text.txt").write_text("def add(a, b):\n    return a + b\n\n" * 80)
    r = cli_subprocess("distill", "--teacher", tmp_path / "teacher", "--student", tmp_path / "student",
                       "--data", tmp_path / "text.txt", "--steps", "2", "--seq-len", "16", "--batch-size", "2",
                       "--eval-samples", "2", "--device", "cpu", "--out", tmp_path / "out", cwd=tmp_path)
    assert r.code == 0, r.err
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model", output_loading_info=True)
    assert not info["missing_keys"] and (tmp_path / "out" / "model" / "tokenizer.json").exists()
    assert (tmp_path / "out" / "model" / "prune_recipe.json").exists()  # carried for the card
    assert (tmp_path / "out" / "model" / "distill.json").exists() and (tmp_path / "out" / "model" / "README.md").exists()
    record = json.loads((tmp_path / "out" / "distill.json").read_text())
    assert record["teacher"]["kind"] == "directory" and len(record["splits"]["evaluation"]["windows"]) == 2
