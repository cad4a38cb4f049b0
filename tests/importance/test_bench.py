"""bench, FLOPs accounting, batch-size auto-tuning and the compiled analysis pass, on CPU."""

import json
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from analysis.core.errors import MinitronError
from analysis.core.perf import find_batch_size, is_oom, parse_batch_size
from analysis.data import DataConfig
from analysis.importance.bench import forward_flops_per_token
from analysis.importance.pipeline import AnalysisConfig, run_analysis
from analysis.importance.results import load_run
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadConfig
from tests.helpers import TINY, run_cli, tiny_model


# --- FLOPs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["nemotron", "llama"])
@pytest.mark.parametrize("lm_head", [False, True])
def test_flops_formula_matches_flop_counter(family, lm_head):
    """2 x matmul weights + attention scores/values (+ head) equals torch's own count of the forward.

    Eager attention, because the counter sees its two bmm's; CPU SDPA kernels are not counted.
    """
    model = tiny_model(family)
    model.set_attn_implementation("eager")
    B, T = 2, 16
    ids = torch.randint(0, model.config.vocab_size, (B, T))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        (model if lm_head else model.model)(input_ids=ids, use_cache=False)
    arch = DecoderAdapter(model).arch
    assert counter.get_total_flops() == B * T * forward_flops_per_token(arch, T, lm_head=lm_head)


def test_matmul_count_is_the_non_embedding_params_without_norms():
    for arch in TINY.values():
        p = arch.params()
        norm = arch.hidden * (2 if arch.norm_has_bias else 1)
        assert arch.params()["matmul"] == p["non_embedding"] - (2 * arch.layers + 1) * norm


# --- batch-size auto-tuning ----------------------------------------------------------------------
def _fake_probe(limit, calls):
    """Runs out of memory above ``limit`` samples, like a GPU would."""
    def probe(b):
        calls.append(b)
        if b > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return 0.1 * b
    return probe


@pytest.mark.parametrize("limit, cap, expected, tried", [
    (12, 64, 8, [1, 2, 4, 8, 16]),  # doubling until OOM, back off to the last size that fitted
    (100, 20, 20, [1, 2, 4, 8, 16, 20]),  # the cap is tried itself, not skipped
    (3, 64, 2, [1, 2, 4]),
])
def test_find_batch_size_backs_off(limit, cap, expected, tried):
    calls = []
    assert find_batch_size(_fake_probe(limit, calls), cap=cap) == expected
    assert calls == tried


def test_find_batch_size_errors():
    with pytest.raises(MinitronError, match="already runs out of memory"):
        find_batch_size(_fake_probe(0, []), cap=8)

    def broken(b):
        raise ValueError("not a memory problem")
    with pytest.raises(ValueError):  # only OOM is swallowed
        find_batch_size(broken, cap=8)


def test_find_batch_size_stops_when_throughput_saturates():
    # per-sample time stops improving at 4: keep 4, do not spend memory on 8 or 16
    seconds = {1: 1.0, 2: 1.2, 4: 1.6, 8: 3.1, 16: 6.0}
    assert find_batch_size(lambda b: seconds[b], cap=16, min_gain=0.10) == 4


def test_oom_recognition_and_parsing():
    assert is_oom(torch.cuda.OutOfMemoryError("x"))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert is_oom(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert parse_batch_size("auto") == "auto" and parse_batch_size("4") == 4
    for bad in ("0", "x", "-2"):
        with pytest.raises(MinitronError):
            parse_batch_size(bad)


# --- bench CLI ----------------------------------------------------------------------------------
def test_bench_cli_on_the_embedded_default(smol):
    res = run_cli("bench", "--seq-len", "8", "--batch-size", "auto", "--max-batch-size", "2", "--steps", "1",
                  "--warmup", "1", "--json")
    assert res.code == 0, res.err
    r = json.loads(res.out)
    assert r["model"] == "smollm2-135m" and r["device"] == "cpu" and r["batch_size"] in (1, 2)
    assert set(r["modes"]) == {"plain/off", "analysis/off"}  # CPU: eager only, unless asked
    assert r["hooks_overhead"]["off"] > 0 and 0 < r["modes"]["plain/off"]["mfu"]
    assert r["fastest"] == {"plain": "plain/off", "analysis": "analysis/off"}
    assert r["flops_per_token"] == forward_flops_per_token(smol.adapter.arch, 8)
    # projection: paper tokens at the achieved FLOP/s, with 4096-token attention
    proj = 1024 * 4096 * forward_flops_per_token(smol.adapter.arch, 4096) / r["modes"]["analysis/off"]["flops_per_s"]
    assert r["projected_paper_calibration_s"] == pytest.approx(proj)


def test_bench_table_compiled_with_dynamo_only(tiny_dir):
    """Every compile variant on CPU (dynamo tracing, no inductor): one graph each, no graph breaks.

    Regional: one graph serves every decoder layer, with and without the hooks inside it.
    """
    from rich.console import Console

    from analysis.importance.bench import BenchConfig, print_report, run_bench

    d, _ = tiny_dir
    torch._dynamo.reset()
    r = run_bench(BenchConfig(load=LoadConfig(model=str(d), device="cpu"), seq_len=16, batch_size=2, steps=1,
                              warmup=2, compile="all", compile_backend="eager", matmul_size=64))
    assert set(r["modes"]) == {f"{k}/{v}" for k in ("plain", "analysis") for v in ("off", "regional", "full")}
    for name in ("plain/regional", "analysis/regional", "plain/full", "analysis/full"):
        assert r["modes"][name]["graph_breaks"] == 0, name
    assert r["modes"]["plain/regional"]["graphs"] == r["modes"]["plain/full"]["graphs"] == 1
    assert r["modes"]["analysis/full"]["graphs"] == 1
    # regional analysis: the shared layer graph, plus the fused boundary arithmetic once per ring depth
    # (0 to 3 earlier states: of block sizes 1, 2, 4, 8, the 4-layer model has 1, 2, 4)
    assert r["modes"]["analysis/regional"]["graphs"] == 1 + 4
    console = Console(record=True, width=140)
    print_report(r, console)
    assert "hooks overhead" in console.export_text()


# --- compiled analysis: hooks in the graph, no recompiles across batches -----------------------
DATA = DataConfig(seq_len=24, calib_samples=5, eval_samples=2, seed=2)


def _cfg(d, **kw):
    return AnalysisConfig(load=LoadConfig(model=str(d), device="cpu"), data=DATA, batch_size=2, block_sizes=(1, 2),
                          sensitivity=False, **kw)


def _assert_same_tensors(a, b, rtol=1e-5, atol=1e-6):
    assert set(a.tensors) == set(b.tensors)
    for k in a.tensors:
        torch.testing.assert_close(a.tensors[k], b.tensors[k], rtol=rtol, atol=atol, msg=k)


@pytest.mark.parametrize("backend", ["eager", pytest.param("inductor", marks=pytest.mark.skipif(
    not os.environ.get("MINITRON_TEST_INDUCTOR"),
    reason="inductor compiles C++ for ~2 min on 2 shared cores; set MINITRON_TEST_INDUCTOR=1"))])
def test_compiled_calibration_one_graph_same_numbers(tiny_dir, tmp_path, backend):
    """5 samples in batches of 2: the last batch is padded, so all three calls share one graph."""
    d, _ = tiny_dir
    torch._dynamo.reset()
    compiled = load_run(run_analysis(_cfg(d, compile="full", compile_backend=backend), out=tmp_path / "c"))
    eager = load_run(run_analysis(_cfg(d, compile="off"), out=tmp_path / "e"))
    assert {k: compiled.metrics["timings"]["compile"][k] for k in ("mode", "backend", "graphs", "graph_breaks")} == {
        "mode": "full", "backend": backend, "graphs": 1, "graph_breaks": 0}
    assert eager.metrics["timings"]["compile"]["mode"] == "off"
    _assert_same_tensors(compiled, eager, rtol=1e-4 if backend == "inductor" else 1e-5)


def test_regional_calibration_shares_one_layer_graph_same_numbers(tiny_dir, tmp_path):
    """Regional: the decoder layers share one compiled graph with the hooks traced in; numbers as eager."""
    d, _ = tiny_dir
    torch._dynamo.reset()
    regional = load_run(run_analysis(_cfg(d, compile="regional", compile_backend="eager"), out=tmp_path / "r"))
    eager = load_run(run_analysis(_cfg(d, compile="off"), out=tmp_path / "e"))
    info = regional.metrics["timings"]["compile"]
    # the shared layer graph, plus the fused boundary arithmetic once per ring depth (0, 1 or 2 earlier states)
    assert info["mode"] == "regional" and info["graph_breaks"] == 0 and info["graphs"] == 1 + 3
    _assert_same_tensors(regional, eager)


def test_random_tokens_and_auto_batch_size(tiny_dir, tmp_path):
    """--data random needs no tokenizer (GPU box without network); auto picks a size within the samples."""
    d, _ = tiny_dir
    cfg = AnalysisConfig(load=LoadConfig(model=str(d), device="cpu", random_init=True),
                         data=DataConfig(source="random", seq_len=16, calib_samples=4, eval_samples=2),
                         batch_size="auto", max_batch_size=4, block_sizes=(1,))
    res = load_run(run_analysis(cfg, out=tmp_path / "r"))
    assert res.metrics["data"]["source"] == "random" and 1 <= res.metrics["timings"]["batch_size"] <= 4
    assert res.metrics["config"]["batch_size"] == "auto"
