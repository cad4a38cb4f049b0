"""``compare`` against independent references: per-position float64 loops on full logits, HF's hidden states + CKA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from analysis.data import DataConfig, build_splits, split_record
from analysis.evaluation.compare import CompareConfig, load_compare, run_compare
from analysis.evaluation.divergence import cka_mask
from analysis.evaluation.loss import heldout_pair
from analysis.evaluation.similarity import linear_cka
from analysis.models.loading import LoadConfig, save_safetensors
from analysis.pruning.export import export_model
from analysis.pruning.plan import Importance, PruneTarget
from analysis.pruning.surgery import prune_model
from tests.helpers import run_cli, tiny_model

WINDOWS = {"source": "pydoc", "seq_len": 24, "eval_samples": 3, "seed": 0}
DISTILL_DATA = DataConfig(seq_len=24, calib_samples=9, eval_samples=1, test_samples=3)  # training | selection | evaluation


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def students(tiny_dirs, smol, tmp_path_factory):
    """A depth- and width-pruned student with its recipe, and a 'distilled' copy that names it as its start."""
    teacher_dir, teacher = tiny_dirs["llama"]
    root = tmp_path_factory.mktemp("students")
    g = torch.Generator().manual_seed(3)
    imp = Importance(channels=torch.rand(32, generator=g), heads=torch.rand(4, 4, generator=g),
                     neurons=torch.rand(4, 40, generator=g), depth=torch.tensor([4.0, 1.0, 3.0, 2.0]))
    pruned = prune_model(teacher, PruneTarget(hidden=24, ffn=32, layers=3), imp)
    recipe = {"teacher": str(teacher_dir), "teacher_params": 0, "params": 0, "target": {}, "depth_metric": "bi",
              "aggregation": "l2_mean", "ppl_before": None, "ppl_after": None, "importance_run": None,
              "ppl_data": WINDOWS, "kept_layers": pruned.plan.layers}
    pruned_dir = export_model(pruned.model, smol.tokenizer, root / "pruned", recipe)
    distilled_dir = root / "run" / "model"  # laid out as `distill` writes it
    shutil.copytree(pruned_dir, distilled_dir)
    model = _load(distilled_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    save_safetensors(model, distilled_dir)
    splits = build_splits(smol.tokenizer, DISTILL_DATA)
    roles = {"calib": "training", "eval": "selection", "test": "evaluation"}
    (distilled_dir / "distill.json").write_text(json.dumps({"student": {"ref": str(pruned_dir)},
                                                            "data": splits.meta, "splits": split_record(splits.meta, roles)}))
    return teacher_dir, pruned_dir, distilled_dir, pruned.plan.layers


@pytest.fixture(scope="module")
def compared(students, tmp_path_factory):
    teacher_dir, _, distilled_dir, _ = students
    cfg = CompareConfig(teacher=LoadConfig(model=str(teacher_dir), device="cpu"),
                        student=LoadConfig(model=str(distilled_dir), device="cpu"), batch_size=2, cka_tokens=40,
                        iters=200)
    return load_compare(run_compare(cfg, out=tmp_path_factory.mktemp("cmp") / "out"))


def test_kl_agreement_and_loss_equal_per_position_loops(students, compared, smol):
    teacher_dir, _, distilled_dir, _ = students
    teacher, student = _load(teacher_dir), _load(distilled_dir)
    splits = build_splits(smol.tokenizer, DISTILL_DATA)
    ids = splits.test  # the student's own evaluation windows, never its training or selection ones
    assert torch.equal(compared.tensors["ids"], ids)
    assert compared.doc["windows"]["eval_windows"] == splits.meta["test_windows"]
    with torch.no_grad():
        t_logp = torch.log_softmax(teacher(ids).logits.double(), -1)
        s_logp = torch.log_softmax(student(ids).logits.double(), -1)
    kl = agree = 0.0
    for w in range(ids.shape[0]):
        for p in range(ids.shape[1]):
            kl += float((t_logp[w, p].exp() * (t_logp[w, p] - s_logp[w, p])).sum())
            agree += float(t_logp[w, p].argmax() == s_logp[w, p].argmax())
    got = compared.doc["students"]["student"]
    assert got["kl"]["value"] == pytest.approx(kl / ids.numel(), rel=1e-5)
    assert got["top1_agreement"]["value"] == pytest.approx(agree / ids.numel(), abs=1e-12)
    pair = heldout_pair(student, teacher, ids)
    assert got["loss"]["value"] == pytest.approx(pair["loss"], rel=1e-5)
    assert got["teacher_loss"]["value"] == pytest.approx(pair["teacher_loss"], rel=1e-5)
    assert got["loss_increase"]["value"] == pytest.approx(pair["loss"] - pair["teacher_loss"], abs=1e-5)
    assert got["kl"]["lo"] <= got["kl"]["value"] <= got["kl"]["hi"]
    worst = got["worst_tokens"][0]
    delta = compared.tensors["student.s_nll"] - compared.tensors["teacher.nll"]
    assert worst["delta_nll"] == pytest.approx(float(delta.max()), rel=1e-6)
    assert worst["token"] == smol.tokenizer.decode([int(ids[worst["window"], worst["position"]])])
    assert compared.doc["windows"]["from"].startswith("the student's evaluation windows (distill.json)")


def test_cka_equals_linear_cka_of_hf_hidden_states_at_matched_depth(students, compared):
    teacher_dir, _, distilled_dir, kept = students
    ids = compared.tensors["ids"]
    mask = cka_mask(ids.shape[0], ids.shape[1], 40, 0)
    with torch.no_grad():  # hidden_states[j] is the input of layer j for j < L (the last one is normed)
        t_hs = _load(teacher_dir)(ids, output_hidden_states=True).hidden_states
        s_hs = _load(distilled_dir)(ids, output_hidden_states=True).hidden_states
    matrix = compared.tensors["student.cka"]
    assert matrix.shape == (4, 5)
    for i in range(3):
        for j in range(4):
            assert float(matrix[i, j]) == pytest.approx(linear_cka(s_hs[i][mask], t_hs[j][mask]), rel=1e-4, abs=1e-6)
    cka = compared.doc["students"]["student"]["cka"]
    assert [tuple(p) for p in cka["pairs"]] == [(0, 0)] + [(j + 1, k + 1) for j, k in enumerate(kept)]
    assert cka["tokens"] == 40 and cka["matching"].startswith("kept_layers")


def test_a_distilled_student_is_compared_with_the_model_it_started_from(compared):
    doc = compared.doc
    assert set(doc["students"]) == {"student", "baseline"}
    assert doc["students"]["student"]["role"] == "distilled" and doc["students"]["baseline"]["role"] == "pruned"
    for metric, key in (("kl", "kl"), ("top1_agreement", "top1_agreement"), ("loss", "loss")):
        diff = doc["distillation"][metric]
        want = doc["students"]["student"][key]["value"] - doc["students"]["baseline"][key]["value"]
        assert diff["value"] == pytest.approx(want, abs=1e-9)
        assert diff["direction"] in ("up", "down", "none") and diff["lo"] <= diff["value"] <= diff["hi"]


def test_cli_takes_the_teacher_from_the_recipe_and_draws_figures(students, tmp_path):
    _, pruned_dir, _, _ = students
    r = run_cli("compare", "--student", pruned_dir, "--out", tmp_path / "c", "--device", "cpu", "--cka-tokens", "32")
    assert r.code == 0, r.err
    result = load_compare(tmp_path / "c")
    assert result.doc["distillation"] is None and result.sides == ["student"]
    for name in ("cka", "kl_by_position", "worst_tokens"):
        assert (tmp_path / "c" / "figures" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    again = run_cli("compare", "--student", pruned_dir, "--out", tmp_path / "c", "--device", "cpu", "--cka-tokens", "32")
    assert again.code == 0, again.err  # a directory compare made itself is rewritten, figures too
    bare = tmp_path / "bare"  # a run without figures, then a figure compare did not make
    assert run_cli("compare", "--student", pruned_dir, "--out", bare, "--cka-tokens", "32", "--no-figures").code == 0
    (bare / "figures").mkdir()
    (bare / "figures" / "cka.png").write_bytes(b"a user's file")
    again = run_cli("compare", "--student", pruned_dir, "--out", bare, "--cka-tokens", "32")
    assert again.code == 2 and "--force" in again.err and (bare / "figures" / "cka.png").read_bytes() == b"a user's file"
    again = run_cli("compare", "--student", pruned_dir, "--out", bare, "--cka-tokens", "32", "--force")
    assert again.code == 0, again.err  # --force reaches the figures too
    assert (bare / "figures" / "cka.png").read_bytes().startswith(b"\x89PNG")
    note = run_cli("compare", "--student", pruned_dir, "--seq-len", "16", "--out", tmp_path / "d", "--no-figures")
    assert note.code == 0 and "may be text it was calibrated or trained on" in load_compare(tmp_path / "d").doc["windows"]["from"]


def test_bad_inputs_are_one_line_errors(students, tmp_path):
    teacher_dir, pruned_dir, _, _ = students
    r = run_cli("compare", "--student", teacher_dir, "--out", tmp_path / "x")
    assert r.code == 2 and "pass --teacher" in r.err and len(r.error_lines) == 1
    other = tmp_path / "other-vocab"
    model = tiny_model("llama")  # vocabulary of 89, not the teacher's
    other.mkdir()
    model.config.save_pretrained(other)
    save_safetensors(model, other)
    r = run_cli("compare", "--student", pruned_dir, "--teacher", other, "--out", tmp_path / "y")
    assert r.code == 2 and "must share a tokenizer" in r.err and not (tmp_path / "y").exists()
    Path(tmp_path / "file").write_text("x")
    r = run_cli("compare", "--student", pruned_dir, "--out", tmp_path / "file")
    assert r.code == 2 and "is a file" in r.err


def test_a_model_against_itself_writes_strict_json_with_undefined_shares_as_null(students, tmp_path):
    """No loss increase anywhere: the share the worst tokens carry is 0/0, written as null, never NaN."""
    from analysis.core.io import read_json

    teacher_dir = students[0]
    cfg = CompareConfig(teacher=LoadConfig(model=str(teacher_dir), device="cpu"),
                        student=LoadConfig(model=str(teacher_dir), device="cpu"), batch_size=2, cka_tokens=8,
                        worst=2, iters=50, windows={"seq_len": 16, "eval_samples": 2})
    doc = read_json(run_compare(cfg, out=tmp_path / "self") / "compare.json")  # strict: NaN would be refused
    s = doc["students"]["student"]
    assert s["kl"]["value"] == 0.0 and s["loss_increase"]["value"] == 0.0 and s["top1_agreement"]["value"] == 1.0
    assert s["concentration"]["top_0.1"] is None and s["concentration"]["top_0.01"] is None
    assert s["cka"]["matched_mean"] == pytest.approx(1.0)


def test_config_ranges_are_checked_where_the_library_is_called():
    """A notebook gets the message the shell gets (analysis.core.validate), before anything loads."""
    from analysis.core.errors import MinitronError

    load = LoadConfig(model="nowhere")
    for changes, message in (({"cka_tokens": 1}, "--cka-tokens must be"), ({"worst": -1}, "--worst must be"),
                             ({"batch_size": 0}, "--batch-size must be"), ({"iters": 0}, "iters must be"),
                             ({"windows": {"seq_len": 1}}, "--seq-len must be"),
                             ({"windows": {"stride": 3}}, "unknown window settings ['stride']")):
        with pytest.raises(MinitronError, match=message.replace("[", r"\[").replace("]", r"\]")):
            CompareConfig(teacher=load, student=load, **changes)


def test_recorded_evaluation_windows_whose_text_changed_are_a_one_line_error(students, tmp_path):
    """Windows are found by index in the recorded stream; a stream that differs is refused, not silently reused."""
    _, _, distilled_dir, _ = students
    moved = tmp_path / "run" / "model"
    shutil.copytree(distilled_dir, moved)
    record = json.loads((moved / "distill.json").read_text())
    record["splits"]["stream_sha256"] = "0" * 16
    (moved / "distill.json").write_text(json.dumps(record))
    r = run_cli("compare", "--student", moved, "--out", tmp_path / "c", "--device", "cpu", "--no-figures")
    assert r.code == 2 and "no longer tokenizes to the stream" in r.err and len(r.error_lines) == 1
    assert not (tmp_path / "c").exists()


def test_one_massive_activation_token_is_left_out_of_the_robust_cka():
    """One token with a huge residual norm drives linear CKA towards 0; ``without_massive`` drops exactly it."""
    import numpy as np

    from analysis.evaluation.divergence import Side, cka_section

    g = torch.Generator().manual_seed(0)
    teacher = [torch.randn(60, 6, generator=g) for _ in range(3)]
    student = [t @ torch.randn(6, 5, generator=g) + 0.1 * torch.randn(60, 5, generator=g) for t in teacher]
    student[2][17] *= 500.0  # token 17 becomes a massive activation after the student's last layer
    side = Side("student", lm=None, records={"kept_layers": None})
    side.states = [[s[:30], s[30:]] for s in student]  # as collected, window batch by window batch
    section, _ = cka_section(teacher, side, teacher_layers=2)

    def cka(x, y):  # Gram form, numpy float64: an independent route to linear CKA
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        h = np.eye(len(x)) - 1.0 / len(x)
        k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
        return float(np.sum(k * l_) / (np.linalg.norm(k) * np.linalg.norm(l_)))

    keep = [i for i in range(60) if i != 17]
    assert section["matched"][2] == pytest.approx(cka(student[2], teacher[2]), rel=1e-9)
    robust = section["without_massive"]
    assert section["matched"][2] < 0.5 * robust["matched"][2]  # one token of sixty dominates
    assert robust["dropped"] == 1 and robust["factor"] == 20.0
    for j in range(3):
        assert robust["matched"][j] == pytest.approx(cka(student[j][keep], teacher[j][keep]), rel=1e-9)
    assert robust["matched"][2] == pytest.approx(robust["matched"][1], abs=0.1)  # back to the other layers' level
