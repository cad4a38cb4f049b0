"""Statistics leave the device at one boundary: the post-pass code never mixes an accelerator tensor with a CPU one.

CI has no GPU, so a tensor subclass plays the accelerator (``tests.helpers.ElsewhereTensor``): mixing it
with a CPU tensor raises, as CUDA does. On a machine with CUDA, the same pipeline runs for real.
"""

from __future__ import annotations

import pytest
import torch

from analysis.core import distributed as dd
from analysis.data import DataConfig
from analysis.importance.pipeline import AnalysisConfig, AnalysisRun, run_key, splits_for
from analysis.importance.results import load_run
from analysis.models.loading import LoadConfig, load_model
from tests.helpers import ElsewhereTensor, elsewhere

DATA = DataConfig(seq_len=16, calib_samples=4, eval_samples=2, seed=1)


def test_the_stand_in_device_is_strict():
    a, b = elsewhere(torch.ones(3)), torch.ones(3)
    with pytest.raises(RuntimeError, match="same device"):
        _ = a + b
    assert type(a.cpu() + b) is torch.Tensor and type(a * 2) is ElsewhereTensor
    assert type(a.sum() + torch.tensor(1.0)) is ElsewhereTensor  # 0-d CPU tensors mix, as with CUDA


def _run(bpe_dir, tmp_path) -> AnalysisRun:
    d, _ = bpe_dir
    cfg = AnalysisConfig(load=LoadConfig(model=str(d), device="cpu"), data=DATA, batch_size=2, block_sizes=(1, 2))
    lm = load_model(cfg.load)
    splits, note = splits_for(lm, cfg.data)
    run = AnalysisRun(cfg, lm, splits, run_key(cfg, lm, splits), tmp_path / "run", dd.Dist(), note)
    run.start(resume=False)
    run.calibrate()
    run.evaluate()
    return run


def test_post_pass_code_sees_only_cpu_tensors(bpe_dir, tmp_path):
    """The running statistics live "elsewhere" after the pass; metrics, summaries and writers still work.

    Before the boundary existed, spearman(block importance on the device, drop loss on the CPU) crashed
    at the very end of a GPU analyze.
    """
    run = _run(bpe_dir, tmp_path)
    for stat in run.collector._stats().values():
        for name, t in stat.state().items():
            if name != "n":
                setattr(stat, name, elsewhere(t))
    run.write(0.0, 0.0)  # finalize -> depth metrics -> Spearman -> metrics.json -> safetensors
    assert all(type(t) is torch.Tensor and t.device.type == "cpu" for t in run.tensors().values())
    res = load_run(tmp_path / "run")
    assert -1 <= res.metrics["rank_agreement"]["spearman_bi_vs_drop_loss"] <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("compile", ["off", "regional"])
def test_analyze_on_cuda_matches_cpu(bpe_dir, tmp_path, compile):
    from analysis.importance.pipeline import run_analysis

    d, _ = bpe_dir

    def cfg(device):
        return AnalysisConfig(load=LoadConfig(model=str(d), device=device, dtype="float32"), data=DATA,
                              batch_size=2, block_sizes=(1, 2), compile=compile if device == "cuda" else "off")
    gpu = load_run(run_analysis(cfg("cuda"), out=tmp_path / "gpu"))
    cpu = load_run(run_analysis(cfg("cpu"), out=tmp_path / "cpu"))
    assert gpu.metrics["timings"]["compile"]["mode"] == compile
    for k in cpu.tensors:
        torch.testing.assert_close(gpu.tensors[k], cpu.tensors[k], rtol=1e-3, atol=1e-4, msg=k)
