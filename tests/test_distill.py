import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from analysis.core.errors import MinitronError
from analysis.models.adapter import DecoderAdapter
from analysis.training.loop import (
    DistillConfig,
    batch_indices,
    clm_loss,
    distill,
    forward_kl,
    lr_at,
    make_optimizer,
)
from tests.conftest import tiny_model

ROOT = Path(__file__).resolve().parents[1]
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


def random_ids(vocab, n, t=16, seed=1):
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(seed))


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


# --- losses -------------------------------------------------------------------------------------
def naive_kl(s, t, mask, temperature):
    """float64 loops over tokens and vocabulary."""
    total, n = 0.0, 0
    s, t = s.double().reshape(-1, s.shape[-1]) / temperature, t.double().reshape(-1, t.shape[-1]) / temperature
    for row in range(s.shape[0]):
        if mask is not None and not mask.reshape(-1)[row]:
            continue
        zs, zt = math.log(sum(math.exp(x) for x in s[row].tolist())), math.log(sum(math.exp(x) for x in t[row].tolist()))
        for v in range(s.shape[1]):
            lt, ls = t[row, v].item() - zt, s[row, v].item() - zs
            total += math.exp(lt) * (lt - ls)
        n += 1
    return total / n * temperature**2


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_forward_kl_matches_naive_float64_loop(temperature):
    g = torch.Generator().manual_seed(0)
    s, t = 3 * torch.randn(2, 5, 13, generator=g), 3 * torch.randn(2, 5, 13, generator=g)
    mask = torch.rand(2, 5, generator=g) > 0.3
    for m in (None, mask):
        got = forward_kl(s, t, m, temperature=temperature, chunk=3).item()
        assert got == pytest.approx(naive_kl(s, t, m, temperature), abs=1e-6)


def test_forward_kl_zero_for_identical_positive_otherwise():
    s = torch.randn(3, 7, 17)
    assert forward_kl(s, s.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert forward_kl(s, s + 5.0).item() == pytest.approx(0.0, abs=1e-6)  # softmax is shift-invariant
    assert forward_kl(s, s.flip(-1)).item() > 1e-3


def test_forward_kl_chunked_gradient_equals_unchunked():
    t = torch.randn(2, 6, 11)
    s1 = torch.randn(2, 6, 11, requires_grad=True)
    s2 = s1.detach().clone().requires_grad_(True)
    a, b = forward_kl(s1, t, chunk=1), forward_kl(s2, t, chunk=1000)
    a.backward()
    b.backward()
    assert a.item() == pytest.approx(b.item(), abs=1e-6)
    torch.testing.assert_close(s1.grad, s2.grad, atol=1e-7, rtol=1e-5)


def test_clm_loss_matches_naive():
    logits, ids = torch.randn(2, 5, 9), torch.randint(0, 9, (2, 5))
    logp = torch.log_softmax(logits.double(), -1)
    want = -sum(logp[b, t, ids[b, t + 1]].item() for b in range(2) for t in range(4)) / 8
    assert clm_loss(logits, ids).item() == pytest.approx(want, abs=1e-6)


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


# --- command line ---------------------------------------------------------------------------------
def _cli(*args, cwd):
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # see one_thread
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=env, check=False)


def test_cli_mismatched_vocab_is_one_line_error(tmp_path):
    tiny_model("llama").save_pretrained(tmp_path / "t")
    tiny_model("nemotron").save_pretrained(tmp_path / "s")
    r = _cli("distill", "--teacher", str(tmp_path / "t"), "--student", str(tmp_path / "s"), "--device", "cpu",
             "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and not (tmp_path / "out").exists()
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]  # loading bars aside
    assert len(errors) == 1 and errors[0].startswith("error:") and "vocabulary (89)" in errors[0]


def test_cli_distill_writes_a_model_directory(tmp_path):
    from transformers import AutoTokenizer

    from analysis.models.loading import cached_gguf_dir, locate_gguf
    from analysis.models.registry import DEFAULT_MODEL, get

    tokenizer = AutoTokenizer.from_pretrained(cached_gguf_dir(locate_gguf(get(DEFAULT_MODEL))))
    teacher = tiny_model("llama", vocab=len(tokenizer))
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    save_subset(teacher, [0, 2, 3], tmp_path / "student")
    (tmp_path / "student" / "prune_recipe.json").write_text('{"kept_layers": [0, 2, 3]}')
    (tmp_path / "text.txt").write_text("def add(a, b):\n    return a + b\n\n" * 80)
    args = ["distill", "--teacher", str(tmp_path / "teacher"), "--student", str(tmp_path / "student"),
            "--data", str(tmp_path / "text.txt"), "--steps", "2", "--seq-len", "16", "--batch-size", "2",
            "--eval-samples", "2", "--device", "cpu", "--out", str(tmp_path / "out")]
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model", output_loading_info=True)
    assert not info["missing_keys"] and (tmp_path / "out" / "model" / "tokenizer.json").exists()
    assert (tmp_path / "out" / "model" / "prune_recipe.json").exists()  # carried for the card
    assert (tmp_path / "out" / "model" / "distill.json").exists()
    record = json.loads((tmp_path / "out" / "distill.json").read_text())
    assert record["teacher"]["kind"] == "directory" and record["data"]["eval_windows"]
