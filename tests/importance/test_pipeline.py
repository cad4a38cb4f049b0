"""The analysis engine against naive references: stored activations, explicit loops, float64."""

import copy
import json
import math

import pytest
import torch

from analysis.core.errors import MinitronError
from analysis.data import DataConfig, build_splits
from analysis.importance.metrics import spearman
from analysis.importance.pipeline import AnalysisConfig, RunInterrupted, run_analysis
from analysis.importance.results import AGGREGATIONS, load_run
from analysis.importance.sensitivity import drop_block_nll, drop_block_nll_naive, full_pass
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadConfig

DATA = DataConfig(seq_len=24, calib_samples=5, eval_samples=3, seed=2)


def _cfg(model_dir, batch_size=2, **kw):
    return AnalysisConfig(load=LoadConfig(model=str(model_dir), device="cpu"), data=DATA, batch_size=batch_size,
                          block_sizes=(1, 2), **kw)


@pytest.fixture(scope="module")
def runs(tiny_dirs, tmp_path_factory):
    """family -> (run, model): one real analysis of each tiny model, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("runs")
    return {f: (load_run(run_analysis(_cfg(d), out=out / f)), model) for f, (d, model) in tiny_dirs.items()}


@pytest.fixture(params=["nemotron", "llama"])
def run(request, runs):
    return runs[request.param]


def _seq(x, how):  # x (T,) float64
    return {"mean": x.abs().mean(), "l2": x.square().sum().sqrt(), "var": x.var(unbiased=False)}[how]


def _batch(v, how):  # v (N,) float64
    return {"mean": v.abs().mean(), "l2": v.square().sum().sqrt(), "var": v.var(unbiased=False)}[how]


def _naive_importance(acts, b_agg, s_agg):
    """acts: list over samples of (T, C) float64 -> (C,) by explicit loops."""
    C = acts[0].shape[1]
    out = torch.zeros(C, dtype=torch.float64)
    for c in range(C):
        per_sample = torch.stack([_seq(a[:, c], s_agg) for a in acts])
        out[c] = _batch(per_sample, b_agg)
    return out


def _stored_activations(model, ids):
    """Store o_proj inputs, down_proj inputs, both pre-norm outputs and layer boundaries (float64)."""
    ad = DecoderAdapter(model)
    store = {}
    hooks = []

    def keep(name, pre):
        def fn(m, a, out=None):
            store.setdefault(name, []).append((a[0] if pre else out).detach().double())
        return fn
    for i in range(ad.num_layers):
        hooks.append(ad.o_proj(i).register_forward_pre_hook(keep(f"o{i}", True)))
        hooks.append(ad.down_proj(i).register_forward_pre_hook(keep(f"d{i}", True)))
        for p, norm in zip("am", ad.norms(i)):
            hooks.append(norm.register_forward_hook(lambda m, a, o, n=f"n{i}{p}": store.setdefault(n, []).append(o.double())))
        hooks.append(ad.layers[i].register_forward_hook(
            lambda m, a, o, n=f"x{i + 1}": store.setdefault(n, []).append((o[0] if isinstance(o, tuple) else o).double())))
    hooks.append(ad.embed_tokens.register_forward_hook(lambda m, a, o: store.setdefault("x0", []).append(o.double())))
    with torch.no_grad():
        for row in ids:
            model(row[None])
    for h in hooks:
        h.remove()
    return {k: [t[0] for t in v] for k, v in store.items()}  # per sample (T, C)


def test_importance_matches_naive_float64(run, smol):
    res, model = run
    splits = build_splits(smol.tokenizer, DATA)  # the calibration ids exactly as the run cut them
    assert splits.meta["calib_windows"] == res.metrics["data"]["calib_windows"]
    acts = _stored_activations(model, splits.calib)
    ad = DecoderAdapter(model)
    H, hd = ad.num_heads, ad.head_dim
    for b in AGGREGATIONS:
        for s in AGGREGATIONS:
            agg = f"{b}_{s}"
            for i in range(ad.num_layers):
                heads = [a.view(a.shape[0], H, hd).norm(dim=-1) for a in acts[f"o{i}"]]
                torch.testing.assert_close(res.tensors[f"heads.{agg}"][i].double(), _naive_importance(heads, b, s),
                                           rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(res.tensors[f"neurons.{agg}"][i].double(),
                                           _naive_importance(acts[f"d{i}"], b, s), rtol=1e-5, atol=1e-6)
            chan = sum(_naive_importance(acts[f"n{i}{p}"], b, s) for i in range(ad.num_layers) for p in "am")
            torch.testing.assert_close(res.tensors[f"channels.{agg}"].double(), chan, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res.tensors["heads"], res.tensors["heads.l2_mean"])
    # block importance and angular distance from stored boundary states
    L = ad.num_layers
    for n in (1, 2):
        cos = torch.stack([torch.cat([torch.nn.functional.cosine_similarity(acts[f"x{l}"][k], acts[f"x{l + n}"][k], dim=-1)
                                      for k in range(len(acts["x0"]))]) for l in range(L - n + 1)])
        torch.testing.assert_close(res.tensors[f"angular.n{n}"].double(), (cos.clamp(-1, 1).arccos() / math.pi).mean(1),
                                   rtol=1e-5, atol=1e-6)
        if n == 1:
            torch.testing.assert_close(res.tensors["block_importance"].double(), 1 - cos.mean(1), rtol=1e-5, atol=1e-6)


def test_perplexity_matches_hf_fixed_length_recipe(run, smol):
    """HF recipe: slide a window of max_length with stride over the concatenated eval text."""
    res, model = run
    ev = build_splits(smol.tokenizer, DATA).eval
    stream = ev.flatten()[None]
    max_length = stride = DATA.seq_len
    nlls, n_tokens, prev_end = [], 0, 0
    with torch.no_grad():
        for begin in range(0, stream.size(1), stride):
            end = min(begin + max_length, stream.size(1))
            trg_len = end - prev_end
            input_ids = stream[:, begin:end]
            target_ids = input_ids.clone()
            target_ids[:, :-trg_len] = -100
            loss = model(input_ids, labels=target_ids).loss
            valid = (target_ids != -100).sum().item() - 1
            nlls.append(loss * valid)
            n_tokens += valid
            prev_end = end
            if end == stream.size(1):
                break
    ppl = torch.exp(torch.stack(nlls).sum() / n_tokens).item()
    assert res.metrics["eval"]["tokens_scored"] == n_tokens
    assert res.metrics["eval"]["perplexity"] == pytest.approx(ppl, rel=1e-5)


def test_prefix_reuse_equals_deleting_and_rerunning(tiny):
    ad = DecoderAdapter(tiny)
    ids = torch.randint(0, tiny.config.vocab_size, (2, 10))
    full, states = full_pass(ad, ids)
    with torch.no_grad():
        ref = torch.nn.functional.cross_entropy(tiny(ids).logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(),
                                                reduction="sum")
    assert float(full) == pytest.approx(float(ref), rel=1e-5)
    for n in (1, 2, 3):
        for s in range(ad.num_layers - n + 1):
            fast = drop_block_nll(ad, states, ids, s, n)
            naive = drop_block_nll_naive(ad, ids, s, n)
            # independent reference: a deep copy with the layers actually deleted
            m2 = copy.deepcopy(tiny)
            keep = [l for i, l in enumerate(m2.model.layers) if not s <= i < s + n]
            m2.model.layers = torch.nn.ModuleList(keep)
            m2.config.num_hidden_layers = len(keep)
            with torch.no_grad():
                logits = m2(ids, use_cache=False).logits
            deleted = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
            assert float(fast) == pytest.approx(float(naive), rel=1e-5)
            assert float(fast) == pytest.approx(float(deleted), rel=1e-5)


def test_results_agree_across_batch_sizes_and_resume(tiny_dir, tmp_path):
    d, _ = tiny_dir
    a = load_run(run_analysis(_cfg(d, batch_size=1), out=tmp_path / "a"))
    b = load_run(run_analysis(_cfg(d, batch_size=3), out=tmp_path / "b"))
    with pytest.raises(RunInterrupted):
        run_analysis(_cfg(d, batch_size=1), out=tmp_path / "c", stop_after=3)
    assert not (tmp_path / "c").exists()  # nothing half-written, only the hidden checkpoint
    checkpoint = tmp_path / ".c.partial"  # JSON progress and safetensors statistics: nothing to unpickle
    assert sorted(p.name for p in checkpoint.iterdir()) == ["progress.json", "statistics.safetensors"]
    assert json.loads((checkpoint / "progress.json").read_text())["batches_done"] == 3
    c = load_run(run_analysis(_cfg(d, batch_size=1), out=tmp_path / "c", resume=True))
    assert not checkpoint.exists()  # cleared once the run is written
    t = c.metrics["timings"]  # the parts of both sessions, and a total that holds them
    assert t["sessions"] == 2 and t["total_s"] >= t["calibration_s"] + t["eval_s"] + t["sensitivity_s"]
    assert set(a.tensors) == set(b.tensors) == set(c.tensors)
    for k in a.tensors:
        torch.testing.assert_close(a.tensors[k], b.tensors[k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.tensors[k], c.tensors[k], rtol=0, atol=0)
    assert a.metrics["eval"]["perplexity"] == pytest.approx(b.metrics["eval"]["perplexity"], rel=1e-6)


def test_same_config_is_cached(tiny_dir, tmp_path, capsys):
    d, _ = tiny_dir
    first = run_analysis(_cfg(d), out=tmp_path / "r")
    stamp = (first / "metrics.json").stat().st_mtime_ns
    run_analysis(_cfg(d), out=tmp_path / "r")
    assert (first / "metrics.json").stat().st_mtime_ns == stamp
    run_analysis(_cfg(d), out=tmp_path / "r", force=True)
    assert (first / "metrics.json").stat().st_mtime_ns != stamp


def test_metrics_document(run):
    res, _ = run
    m = res.metrics
    L = m["architecture"]["layers"]
    assert len(m["layers"]) == L and set(m["blocks"]) == {"1", "2"}
    assert len(m["blocks"]["2"]["loss"]) == L - 1
    assert m["model"]["weights_fingerprint"] and m["data"]["calib_sha256"] and m["versions"]["torch"]
    assert m["rank_agreement"]["spearman_bi_vs_drop_loss"] == pytest.approx(
        spearman(res.tensors["block_importance"], res.tensors["drop_layer_loss"]))
    assert res.tensors["channels.per_norm"].shape == (2 * L, m["architecture"]["hidden"])


def test_metrics_are_strict_json_and_record_what_was_measured(run):
    res, _ = run
    text = (res.path / "metrics.json").read_text()
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
    assert doc["eval"]["tokens_scored"] == DATA.eval_samples * (DATA.seq_len - 1) > 0
    assert math.isclose(doc["eval"]["perplexity"], math.exp(doc["eval"]["loss"]))


def test_zero_windows_are_refused_before_anything_is_computed(tiny_dir, tmp_path):
    import dataclasses

    d, _ = tiny_dir
    for field, option in (("calib_samples", "--samples"), ("eval_samples", "--eval-samples")):
        with pytest.raises(MinitronError, match=f"{option} must be an integer in \\[1, "):
            AnalysisConfig(load=LoadConfig(model=str(d), device="cpu"), data=dataclasses.replace(DATA, **{field: 0}))
    assert list(tmp_path.iterdir()) == []


def test_summary_signs_and_a_cache_hit_shows_it(tiny_dir, tmp_path):
    import io

    from rich.console import Console

    from analysis.importance.report import print_summary

    d, _ = tiny_dir
    out = run_analysis(_cfg(d), out=tmp_path / "r")
    m = json.loads((out / "metrics.json").read_text())
    m["layers"][0]["delta_loss"] = -0.108  # a layer whose removal helps
    buf = io.StringIO()
    print_summary(m, Console(file=buf, width=200))
    assert "(-0.108)" in buf.getvalue() and "+-" not in buf.getvalue()
    buf = io.StringIO()
    run_analysis(_cfg(d), out=tmp_path / "r", console=Console(file=buf, width=200))
    assert "cached result" in buf.getvalue() and "perplexity (eval)" in buf.getvalue()


def test_the_run_key_depends_on_the_device(tiny_dir):
    from analysis.data import build_splits
    from analysis.importance.pipeline import run_key
    from analysis.models.loading import LoadedModel

    d, model = tiny_dir
    from transformers import AutoTokenizer

    splits = build_splits(AutoTokenizer.from_pretrained(d), DATA)
    prov = {"weights_fingerprint": "f", "dtype": "float32"}
    keys = {dev: run_key(_cfg(d), LoadedModel(model, None, None, prov | {"device": dev}), splits)
            for dev in ("cpu", "cuda:0", "cuda:1")}
    assert keys["cpu"] != keys["cuda:0"] == keys["cuda:1"]


def test_bad_batch_size(tiny_dir):
    d, _ = tiny_dir
    with pytest.raises(MinitronError, match="batch-size"):
        run_analysis(_cfg(d, batch_size=0))


def _mlp_inputs(model, ids) -> dict[int, list[torch.Tensor]]:
    """Per layer, per sample: the MLP's input (the pre-MLP norm's output), float64 (T, D)."""
    ad, store, hooks = DecoderAdapter(model), {}, []
    for i in range(ad.num_layers):
        hooks.append(ad.norms(i)[1].register_forward_hook(
            lambda m, a, o, i=i: store.setdefault(i, []).append(o[0].detach().double())))
    with torch.no_grad():
        for row in ids:
            model(row[None])
    for h in hooks:
        h.remove()
    return store


@pytest.mark.parametrize("family", ["nemotron", "llama"])
def test_pre_and_post_activation_neuron_sites(family, tiny_dirs, smol, tmp_path):
    """Pre-activation = x W1^T (plain: up_proj; gated: gate_proj only); post = the activation the down projection reads.

    Reference: the MLP input captured at the norm and multiplied by the weights in float64 here.
    """
    model_dir, model = tiny_dirs[family]
    pre = load_run(run_analysis(_cfg(model_dir, pre_activation=True, sensitivity=False), out=tmp_path / "pre"))
    post = load_run(run_analysis(_cfg(model_dir, sensitivity=False), out=tmp_path / "post"))
    ad, calib = DecoderAdapter(model), build_splits(smol.tokenizer, DATA).calib
    for i, xs in _mlp_inputs(model, calib).items():
        mlp = ad.mlp(i)
        if family == "llama":  # gated: down(silu(x Wg^T) * x Wu^T)
            first = [x @ mlp.gate_proj.weight.double().T for x in xs]
            act = [torch.nn.functional.silu(f) * (x @ mlp.up_proj.weight.double().T) for f, x in zip(first, xs)]
        else:  # plain: down(relu(x Wu^T)^2)
            first = [x @ mlp.up_proj.weight.double().T for x in xs]
            act = [torch.relu(f).square() for f in first]
        torch.testing.assert_close(pre.tensors["neurons"][i].double(), _naive_importance(first, "l2", "mean"),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(post.tensors["neurons"][i].double(), _naive_importance(act, "l2", "mean"),
                                   rtol=1e-5, atol=1e-6)
    site = pre.metrics["neuron_importance"]
    assert site["site"].endswith("gate_proj" if family == "llama" else "up_proj") and "X W1^T" in site["choice"]
    assert "Model Optimizer" in post.metrics["neuron_importance"]["choice"]
    assert post.metrics["config"]["pre_activation"] is False and pre.metrics["config"]["pre_activation"] is True


def test_metrics_record_both_perplexity_protocols(run, smol):
    res, model = run
    protocols = res.metrics["eval"]["protocols"]
    assert protocols["hf-stride"]["loss"] == res.metrics["eval"]["loss"]
    ev = build_splits(smol.tokenizer, DATA).eval
    lm = protocols["lm-eval"]
    assert lm["scored"] == ev.numel() == lm["tokens"]  # every held-out token, the first from the BOS/EOS prefix
    from analysis.evaluation.perplexity import heldout_lm_eval

    assert lm["token_perplexity"] == pytest.approx(heldout_lm_eval(model, smol.tokenizer, ev).token_perplexity, rel=1e-5)
    assert {"word_perplexity", "byte_perplexity", "bits_per_byte"} <= set(lm)
