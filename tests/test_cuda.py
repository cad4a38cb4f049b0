"""Every library path on CUDA against the same path on the CPU; skipped where there is no GPU (CI).

benchmarks/gpu.sh runs these first. The CPU-side guard for the device boundary is
tests/importance/test_devices.py, which runs everywhere.
"""

from __future__ import annotations

import copy

import pytest
import torch

from analysis.evaluation.loss import heldout
from analysis.importance.bench import BenchConfig, run_bench
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadConfig
from analysis.pruning.plan import Importance, PruneTarget
from analysis.pruning.search import SearchSpace, enumerate_candidates, rank
from analysis.pruning.surgery import prune_model
from analysis.training.loop import DistillConfig, Trainer
from tests.helpers import random_ids, tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _importance(arch, seed=3) -> Importance:
    g = torch.Generator().manual_seed(seed)  # on the CPU, as an analysis run's tensors are
    return Importance(channels=torch.rand(arch.hidden, generator=g), heads=torch.rand(arch.layers, arch.heads, generator=g),
                      neurons=torch.rand(arch.layers, arch.mlp, generator=g), depth=torch.rand(arch.layers, generator=g))


@pytest.mark.parametrize("family", ["nemotron", "llama"])
def test_prune_on_cuda_matches_cpu(family):
    model = tiny_model(family)
    imp = _importance(DecoderAdapter(model).arch)
    target = PruneTarget(hidden=24, ffn=16, heads=2, layers=3)
    cpu = prune_model(model, target, imp).model
    gpu = prune_model(copy.deepcopy(model).cuda(), target, imp).model
    ids = random_ids(model.config.vocab_size, 2, t=9)
    with torch.no_grad():
        torch.testing.assert_close(gpu(ids.cuda()).logits.cpu(), cpu(ids).logits, rtol=1e-4, atol=1e-4)


def test_search_rank_on_cuda_matches_cpu():
    model = tiny_model("llama")
    arch = DecoderAdapter(model).arch
    space = SearchSpace(name="tiny", layers=(3, 4), heads=(2, 4), mlp_factors=(0.5, 1.0), mlp_ratio=1.0, hidden=(16, 32),
                        budget=arch.params()["total"])
    cands = enumerate_candidates(arch, space, tolerance=0.3)
    ids = random_ids(arch.vocab, 2, t=8)
    cpu = rank(model, cands, _importance(arch), ids)
    gpu = rank(copy.deepcopy(model).cuda(), cands, _importance(arch), ids)
    assert gpu == pytest.approx(cpu, rel=1e-4)


def test_training_on_cuda_lowers_kl_in_bf16_autocast():
    teacher, student = tiny_model("llama"), tiny_model("llama", seed=4)
    cfg = DistillConfig(steps=8, seq_len=16, batch_size=4, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_every=0,
                        eval_samples=4, device="cuda")
    trainer = Trainer(teacher, student, random_ids(89, 32, seed=2), random_ids(89, 4), cfg)
    assert trainer.run()
    before, after = trainer.state.evals[0], trainer.state.evals[-1]
    assert after["kl"] < before["kl"] and next(student.parameters()).device.type == "cuda"
    assert heldout(student, random_ids(89, 4)).tokens == 4 * 15


def test_bench_on_cuda_every_variant(bpe_dir):
    d, _ = bpe_dir
    r = run_bench(BenchConfig(load=LoadConfig(model=str(d), device="cuda"), seq_len=32, batch_size=2, steps=2,
                              warmup=1, compile="all", matmul_size=256))
    assert set(r["modes"]) == {f"{k}/{v}" for k in ("plain", "analysis") for v in ("off", "regional", "full")}
    assert all(m["graph_breaks"] == 0 for m in r["modes"].values())
    assert r["modes"]["analysis/regional"]["graphs"] == 1 + 4  # one layer graph + boundary arithmetic per ring depth
