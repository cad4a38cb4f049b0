"""Pruning: identity, an independent hand-sliced reference, GQA ranking, export round trip, dry run."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from analysis.core.errors import MinitronError
from analysis.models.adapter import DecoderAdapter, param_count
from analysis.models.loading import LoadConfig
from analysis.models.registry import get
from analysis.pruning.export import RECIPE_KEYS, export_model
from analysis.pruning.pipeline import PruneConfig, dry_run
from analysis.pruning.plan import (
    Importance,
    PruneTarget,
    check_exportable,
    resolve_target,
    target_from_registry,
)
from analysis.pruning.ranking import rank_heads, rank_layers
from analysis.pruning.surgery import prune_model
from tests.helpers import FAMILIES, tiny_model


def _ids(vocab: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(seed))


def _random_importance(arch, seed: int = 3) -> Importance:
    g = torch.Generator().manual_seed(seed)
    return Importance(channels=torch.rand(arch.hidden, generator=g), heads=torch.rand(arch.layers, arch.heads, generator=g),
                      neurons=torch.rand(arch.layers, arch.mlp, generator=g), depth=torch.rand(arch.layers, generator=g))


def _prune(model, target: PruneTarget, imp: Importance | None = None, head_merge: bool = True):
    pruned = prune_model(model, target, imp or _random_importance(DecoderAdapter(model).arch), head_merge=head_merge)
    return pruned.model, pruned.plan


@pytest.mark.parametrize("family", FAMILIES)
def test_own_shape_is_identity(family):
    model = tiny_model(family)
    pruned, _ = _prune(model, PruneTarget())
    x = _ids(model.config.vocab_size)
    with torch.no_grad():
        assert torch.equal(model(x).logits, pruned(x).logits)


# --- independent reference: explicit index_select on the raw state dict, no adapter ----------------
def _reference(model, plan, hd: int):
    """Slice the teacher's state dict by hand (names spelled out here on purpose) into the pruned config."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    ch, out = plan.channels, {}
    out["model.embed_tokens.weight"] = sd["model.embed_tokens.weight"].index_select(1, ch)
    for norm in ("weight", "bias"):
        if f"model.norm.{norm}" in sd:
            out[f"model.norm.{norm}"] = sd[f"model.norm.{norm}"].index_select(0, ch)
    if "lm_head.weight" in sd and not model.config.tie_word_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"].index_select(1, ch)
    for j, i in enumerate(plan.layers):
        src, dst = f"model.layers.{i}.", f"model.layers.{j}."
        rows = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in plan.heads[i].tolist()])
        neurons = plan.neurons[i]
        out[dst + "self_attn.q_proj.weight"] = sd[src + "self_attn.q_proj.weight"].index_select(0, rows).index_select(1, ch)
        for kv in ("k_proj", "v_proj"):
            out[dst + f"self_attn.{kv}.weight"] = sd[src + f"self_attn.{kv}.weight"].index_select(1, ch)
        out[dst + "self_attn.o_proj.weight"] = sd[src + "self_attn.o_proj.weight"].index_select(0, ch).index_select(1, rows)
        for proj in ("gate_proj", "up_proj"):
            if src + f"mlp.{proj}.weight" in sd:
                out[dst + f"mlp.{proj}.weight"] = sd[src + f"mlp.{proj}.weight"].index_select(0, neurons).index_select(1, ch)
        out[dst + "mlp.down_proj.weight"] = sd[src + "mlp.down_proj.weight"].index_select(0, ch).index_select(1, neurons)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            for p in ("weight", "bias"):
                if src + f"{norm}.{p}" in sd:
                    out[dst + f"{norm}.{p}"] = sd[src + f"{norm}.{p}"].index_select(0, ch)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_matches_hand_sliced_reference(family):
    """Plain slicing (head merging off; tests/pruning/test_merge.py checks the merge against its own reference)."""
    model = tiny_model(family)
    pruned, plan = _prune(model, PruneTarget(hidden=20, ffn=24, heads=2, layers=3), head_merge=False)
    ref = AutoModelForCausalLM.from_config(pruned.config, dtype=torch.float32).eval()
    missing, unexpected = ref.load_state_dict(_reference(model, plan, 8), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied head follows the embedding
    ref.tie_weights()
    assert plan.channels.tolist() == sorted(plan.channels.tolist())
    x = _ids(model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x).logits, ref(x).logits, rtol=0, atol=0)


def test_heads_ranked_within_groups():
    # 2 layers, 6 heads in 2 kv groups of 3: keep 2 per group, chosen inside each group.
    scores = torch.tensor([[9.0, 1, 5, 0, 7, 8], [1.0, 2, 3, 9, 9, 0]])
    assert rank_heads(scores, kv_heads=2, n=4).tolist() == [[0, 2, 4, 5], [1, 2, 3, 4]]


def test_depth_drops_least_important():
    assert rank_layers(torch.tensor([0.9, 0.1, 0.5, 0.3]), 2) == [0, 2]


@pytest.mark.parametrize("family", FAMILIES)
def test_tied_stays_tied_untied_stays_separate(family):
    model = tiny_model(family)
    pruned, _ = _prune(model, PruneTarget(hidden=24))
    a = DecoderAdapter(pruned)
    assert a.tied == DecoderAdapter(model).tied == (family == "llama")
    if not a.tied:
        assert a.lm_head.weight.data_ptr() != a.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("family", FAMILIES)
def test_export_round_trip(family, tmp_path):
    model = tiny_model(family)
    pruned, _ = _prune(model, PruneTarget(hidden=24, ffn=16, heads=2, layers=2))
    recipe = {k: None for k in RECIPE_KEYS} | {"teacher": "tiny", "params": param_count(pruned)}
    out = export_model(pruned, None, tmp_path / "out", recipe)
    assert {"config.json", "model.safetensors", "generation_config.json", "prune_recipe.json"} <= {p.name for p in out.iterdir()}
    loaded, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert DecoderAdapter(loaded).tied == (family == "llama")
    x = _ids(model.config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, pruned(x).logits)
    assert json.loads((out / "prune_recipe.json").read_text())["params"] == param_count(loaded)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_export_finalize_sees_the_staged_directory_and_the_final_name(tmp_path):
    """The card hook runs inside the staged directory (the export appears whole) and knows the final path."""
    seen = []

    def finalize(stage, final):
        seen.append((stage != final, sorted(p.name for p in stage.iterdir()), final))
        (stage / "README.md").write_text(f"# {final.name}")

    out = export_model(tiny_model("llama"), None, tmp_path / "out", {k: None for k in RECIPE_KEYS}, finalize=finalize)
    assert seen == [(True, ["config.json", "generation_config.json", "model.safetensors", "prune_recipe.json"], out)]
    assert (out / "README.md").read_text() == "# out"


def test_export_refuses_to_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(MinitronError, match="--force"):
        export_model(tiny_model("llama"), None, tmp_path / "out", {k: None for k in RECIPE_KEYS})
    assert (tmp_path / "out" / "keep.txt").exists()


@pytest.mark.parametrize("target, message", [
    (PruneTarget(heads=6), "exceeds"), (PruneTarget(heads=3), "multiple of the 2 kv heads"),
    (PruneTarget(layers=5), "exceeds"), (PruneTarget(hidden=0), r"--hidden must be an integer in \[1, "), (PruneTarget(ffn=-1), r"--ffn must be"),
    (PruneTarget(hidden=33), "exceeds"),
])
def test_impossible_targets(target, message):
    with pytest.raises(MinitronError, match=message):
        resolve_target(DecoderAdapter(tiny_model("nemotron")).arch, target)


def test_impossible_target_fails_before_loading(monkeypatch):
    from analysis.pruning import pipeline as prune_run

    def boom(*a, **k):
        raise AssertionError("analysis started")

    monkeypatch.setattr(prune_run, "_importance", boom)
    with pytest.raises(MinitronError, match="exceeds"):
        prune_run.prune(PruneConfig(load=LoadConfig(model="15B", device="meta", random_init=True),
                                    target=PruneTarget(layers=40)))


@pytest.mark.parametrize("name, total", [("8B", 8_271_699_968), ("4B", 4_190_509_056)])
def test_dry_run_15b_to_minitron(name, total):
    config, recipe = dry_run(PruneConfig(load=LoadConfig(model="15B"), target_name=name))
    want = get(name).arch
    assert (config.hidden_size, config.intermediate_size, config.num_attention_heads, config.num_key_value_heads,
            config.num_hidden_layers, config.head_dim) == (want.hidden, want.mlp, want.heads, want.kv_heads,
                                                           want.layers, want.head_dim)
    assert recipe["params"] == total == want.params()["total"]
    assert round(total / 1e9, 3) == float(name[0] == "8" and 8.272 or 4.191)
    with torch.device("meta"):
        assert param_count(AutoModelForCausalLM.from_config(config)) == total


def test_target_from_registry_rejects_other_family():
    with pytest.raises(MinitronError, match="differ"):
        target_from_registry(get("15B").arch, "smollm2-135m")


def test_shapes_transformers_would_reject_fail_before_work():
    """Llama configs need hidden % heads == 0 (even with head_dim set); Nemotron's do not (Minitron-8B: 4096/48)."""
    with pytest.raises(MinitronError, match=r"hidden size \(480\) is not a multiple .* heads \(9\)"):
        check_exportable(resolve_target(get("smollm2-135m").arch, PruneTarget(hidden=480)))
    assert check_exportable(resolve_target(get("15B").arch, PruneTarget(hidden=4096, heads=48))).hidden == 4096
    with pytest.raises(MinitronError, match=r"hidden size \(480\)"):
        dry_run(PruneConfig(load=LoadConfig(model="smollm2-135m"), target=PruneTarget(hidden=480)))


# --- three disjoint splits: the analysis selects on its windows, perplexity is measured on others -----
def _token_spans(windows: list[int], seq_len: int) -> list[tuple[int, int]]:
    return [(w * seq_len, (w + 1) * seq_len) for w in windows]


def _disjoint(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> bool:
    """Naive pairwise check, independent of ``analysis.data.check_disjoint``."""
    return all(x1 <= y0 or y1 <= x0 for x0, x1 in a for y0, y1 in b)


def test_prune_on_the_fly_measures_perplexity_off_the_selection_windows(tiny_dirs, smol, tmp_path, monkeypatch):
    from analysis.data import DataConfig, read_stream
    from analysis.evaluation.loss import heldout
    from analysis.importance.results import load_run
    from analysis.pruning.pipeline import prune

    monkeypatch.chdir(tmp_path)  # the on-the-fly analysis caches under ./runs
    directory, teacher = tiny_dirs["llama"]
    data = DataConfig(seq_len=16, calib_samples=6, eval_samples=4, test_samples=5, seed=2)
    _, _, recipe = prune(PruneConfig(load=LoadConfig(model=str(directory), device="cpu"), target=PruneTarget(layers=3),
                                     depth_metric="drop-loss", data=data, batch_size=4))
    run = load_run(recipe["importance_run"]).metrics["data"]
    splits = recipe["splits"]
    assert splits["importance"]["selection"]["windows"] == run["eval_windows"]  # drop losses were measured there
    assert splits["importance"]["calibration"]["windows"] == run["calib_windows"]
    test = splits["evaluation"]["windows"]
    assert len(test) == 5 and "checked in tokens" in splits["disjoint"]
    for used in (run["eval_windows"], run["calib_windows"]):
        assert _disjoint(_token_spans(test, 16), _token_spans(used, 16))
    # the reported perplexity is the teacher's on exactly the recorded evaluation windows
    stream, _ = read_stream(smol.tokenizer, data)
    ids = stream[: len(stream) // 16 * 16].view(-1, 16)[test]
    assert recipe["ppl_before"] == pytest.approx(heldout(teacher, ids).perplexity, rel=1e-6)


def test_prune_with_a_run_cut_at_another_length_avoids_its_windows(tiny_dirs, tmp_path):
    from analysis.data import DataConfig
    from analysis.importance.pipeline import AnalysisConfig, run_analysis
    from analysis.importance.results import load_run
    from analysis.pruning.pipeline import prune

    directory, _ = tiny_dirs["nemotron"]
    load = LoadConfig(model=str(directory), device="cpu")
    run_dir = run_analysis(AnalysisConfig(load=load, data=DataConfig(seq_len=24, calib_samples=100, eval_samples=50,
                                                                     seed=5), block_sizes=(1,), batch_size=50,
                                          sensitivity=False), out=tmp_path / "run")
    run = load_run(run_dir).metrics["data"]
    data = DataConfig(seq_len=16, calib_samples=0, eval_samples=0, test_samples=80, seed=0)
    _, _, recipe = prune(PruneConfig(load=load, target=PruneTarget(ffn=24), run=str(run_dir), data=data, batch_size=8))
    test = _token_spans(recipe["splits"]["evaluation"]["windows"], 16)
    assert len(test) == 80
    assert _disjoint(test, _token_spans(run["calib_windows"] + run["eval_windows"], 24))
    # without the run's windows to avoid, the same seed would have picked some of them: the check did work
    from analysis.data import make_splits
    plain = make_splits(torch.arange(run["stream_tokens"]), data).meta["test_windows"]
    assert not _disjoint(_token_spans(plain, 16), _token_spans(run["calib_windows"] + run["eval_windows"], 24))
