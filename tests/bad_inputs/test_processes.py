"""What only a real process shows: Ctrl-C (SIGINT) during analyze and distill leaves a resumable
checkpoint and says how to resume; a damaged input in a fresh interpreter is one line, no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli_subprocess, run_cli, tree


def _interrupt(args: list[str], cwd: Path, started: str, timeout: float = 300) -> tuple[int, str]:
    """Run ``cli.py args``, send SIGINT once ``started`` shows on stderr, return (exit code, stderr)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    err, deadline = b"", time.monotonic() + timeout
    while started.encode() not in err:
        assert proc.poll() is None, f"finished before it could be interrupted:\n{err.decode()}"
        assert time.monotonic() < deadline, err.decode()
        try:
            err += os.read(fd, 1 << 16)
        except BlockingIOError:
            time.sleep(0.05)
    time.sleep(0.5)  # a few batches in
    proc.send_signal(signal.SIGINT)
    os.set_blocking(fd, True)
    _, rest = proc.communicate(timeout=timeout)
    return proc.returncode, (err + rest).decode(errors="replace")


@pytest.mark.slow
def test_ctrl_c_during_analyze_saves_a_checkpoint_and_resume_finishes_it(tiny_dirs, tmp_path, monkeypatch,
                                                                          one_thread):
    model = tiny_dirs["llama"][0]
    # 3000 windows: a few seconds of calibration even where the collector is fast (300 took 0.5 s, and the
    # signal, sent 0.5 s after the bar appears, then landed after the loop)
    args = ["analyze", "--model", str(model), "--samples", "3000", "--eval-samples", "2", "--seq-len", "16",
            "--batch-size", "1", "--block-sizes", "1", "--no-figures", "--device", "cpu", "--out", "run"]
    code, err = _interrupt(args, tmp_path, "calibration:")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 130 and len(lines) == 1, err
    assert "checkpoint saved in" in lines[0] and "rerun the same command with --resume" in lines[0]
    assert "Traceback" not in err
    progress = json.loads((tmp_path / ".run.partial" / "progress.json").read_text())
    assert progress["calib_done"] > 0 and not (tmp_path / "run").exists()  # nothing half-written

    monkeypatch.chdir(tmp_path)
    r = run_cli(*args, "--resume")
    assert r.code == 0, r.err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["timings"]["sessions"] == 2
    t = metrics["timings"]
    assert t["total_s"] >= t["calibration_s"] + t["eval_s"] + t["sensitivity_s"]
    assert not (tmp_path / ".run.partial").exists()


@pytest.mark.slow
def test_ctrl_c_during_distill_saves_a_loadable_checkpoint(tiny_dirs, tmp_path):
    model = tiny_dirs["llama"][0]
    args = ["distill", "--student", str(model), "--teacher", str(model), "--steps", "100000", "--seq-len", "16",
            "--batch-size", "1", "--eval-samples", "1", "--eval-every", "0", "--checkpoint-every", "0",
            "--device", "cpu", "--out", "out"]
    code, err = _interrupt(args, tmp_path, "distill:")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 130 and len(lines) == 1, err
    assert "checkpoint saved in" in lines[0] and "--resume" in lines[0] and "Traceback" not in err
    trainer = json.loads((tmp_path / "out" / "checkpoint" / "trainer.json").read_text())
    assert trainer["state"]["step"] >= 1
    marker = json.loads((tmp_path / "out" / ".minitron-lab.json").read_text())
    assert "checkpoint/trainer.json" in marker["files"]  # the directory is ours: --resume finds it


@pytest.mark.slow
def test_damaged_weights_in_a_real_process(tiny_dirs, tmp_path):
    import shutil

    model = Path(shutil.copytree(tiny_dirs["llama"][0], tmp_path / "m"))
    (model / "model.safetensors").write_bytes(b"\x00" * 10)
    before = tree(tmp_path)
    r = cli_subprocess("prune", "--model", model, "--layers", "3", "--out", tmp_path / "out", cwd=tmp_path)
    assert r.code == 2 and r.err.strip().startswith("error:") and r.err.strip().count("\n") == 0, r.err
    assert "model.safetensors: corrupt safetensors file" in r.err and tree(tmp_path) == before
