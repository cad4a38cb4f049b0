"""Data-parallel analyze under torchrun (two gloo processes on CPU) equals one process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analysis.data import DataConfig
from analysis.importance.pipeline import AnalysisConfig, run_analysis
from analysis.importance.results import load_run
from analysis.models.loading import LoadConfig
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # torchrun starts real processes
ARGS = ["--samples", "5", "--eval-samples", "3", "--seq-len", "24", "--block-sizes", "1,2", "--seed", "2",
        "--device", "cpu", "--no-figures"]


def _torchrun(nproc: int, model_dir: Path, out: Path, batch_size: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           str(ROOT / "cli.py"), "analyze", "--model", str(model_dir), "--out", str(out),
           "--batch-size", str(batch_size), *ARGS]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def llama_dir(tiny_dirs):
    return tiny_dirs["llama"][0]


@pytest.mark.parametrize("batch_size", [1, 2])
def test_two_gloo_processes_equal_one(llama_dir, tmp_path, batch_size):
    """5 calibration / 3 eval samples: uneven shards (rank 0 gets one batch more), merged in rank order."""
    proc = _torchrun(2, llama_dir, tmp_path / "two", batch_size)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = load_run(tmp_path / "two")
    cfg = AnalysisConfig(load=LoadConfig(model=str(llama_dir), device="cpu"),
                         data=DataConfig(seq_len=24, calib_samples=5, eval_samples=3, seed=2),
                         batch_size=batch_size, block_sizes=(1, 2))
    one = load_run(run_analysis(cfg, out=tmp_path / "one"))
    assert two.metrics["timings"]["world_size"] == 2 and one.metrics["timings"]["world_size"] == 1
    assert two.metrics["run_id"] == one.metrics["run_id"]  # same config, same cache key
    assert set(two.tensors) == set(one.tensors)
    for k in one.tensors:
        torch.testing.assert_close(two.tensors[k], one.tensors[k], rtol=1e-5, atol=1e-6, msg=k)
    assert two.metrics["eval"]["tokens_scored"] == one.metrics["eval"]["tokens_scored"]
    assert two.metrics["eval"]["perplexity"] == pytest.approx(one.metrics["eval"]["perplexity"], rel=1e-6)
    assert not list(tmp_path.glob(".two.partial*"))  # per-rank checkpoints cleaned up
