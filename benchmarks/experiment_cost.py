"""How well the experiments' cost model predicts their time, on the embedded default (CPU).

    python benchmarks/experiment_cost.py [--threads 1] [--windows 12] [--steps 4] [--analysis]

``python cli.py experiment ... --estimate`` multiplies the work it plans, counted in window-forwards
(``analysis/experiments/cost.py``), by one timed window forward. This script times each kind of
work on its own (held-out loss, held-out loss + KL, distillation and fine-tuning steps of a student
at the paper's study-target shape, and with ``--analysis`` a short analysis run with blocks of
1, 2, 8, 16 layers) and prints measured seconds beside the model's, and the ratio. It also times a
window forward with 1 thread and with every core: on a shared CPU a second OpenMP thread can be
far slower, which is why ``experiment`` picks the thread count by timing.

Shared CPUs are noisy: read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from analysis.data import DataConfig, build_splits
from analysis.evaluation.loss import heldout, heldout_pair
from analysis.experiments import cost
from analysis.experiments.studies import paper_target
from analysis.importance.pipeline import AnalysisConfig, run_analysis
from analysis.models.adapter import DecoderAdapter, param_count
from analysis.models.loading import LoadConfig, load_model
from analysis.pruning.plan import Importance
from analysis.pruning.surgery import prune_model
from analysis.training.loop import DistillConfig, Trainer


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def train_time(teacher, student, ids, steps: int, kd: bool) -> float:
    cfg = DistillConfig(steps=steps, seq_len=ids.shape[1], batch_size=2, eval_every=0, eval_samples=1,
                        checkpoint_every=0, warmup_steps=1, device="cpu")
    trainer = Trainer(teacher, copy.deepcopy(student), ids, ids, cfg if kd else cfg.finetune())
    trainer.state.evals.append({"step": 0})  # time the steps only, not the evaluation before them
    return timed(trainer.run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the measured work")
    parser.add_argument("--windows", type=int, default=12, help="held-out windows")
    parser.add_argument("--steps", type=int, default=4, help="training steps per mode")
    parser.add_argument("--analysis", action="store_true", help="also time a short analysis run (~100 window-forwards)")
    args = parser.parse_args()
    lm = load_model(LoadConfig(device="cpu"))
    model, T = lm.model, 128
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        print(f"one window forward, {n} thread(s): {cost.probe(model, T, repeats=2):.3f} s")
    torch.set_num_threads(args.threads)
    unit = cost.probe(model, T, repeats=3)
    ids = build_splits(lm.tokenizer, DataConfig(seq_len=T, calib_samples=2 * args.steps, eval_samples=args.windows)).eval
    student = prune_model(model, paper_target(DecoderAdapter(model).arch, "study"), Importance()).model
    p = param_count(student) / param_count(model)
    rows = [("held-out loss", timed(lambda: heldout(student, ids)), cost.heldout(p, args.windows)),
            ("held-out loss + KL", timed(lambda: heldout_pair(student, model, ids)), cost.heldout_pair(p, args.windows)),
            ("distillation steps", train_time(model, student, ids, args.steps, True), cost.train(p, args.steps, 2)),
            ("fine-tuning steps", train_time(model, student, ids, args.steps, False),
             cost.train(p, args.steps, 2, kd=False))]
    if args.analysis:
        data = DataConfig(seq_len=T, calib_samples=16, eval_samples=2, seed=7)
        acfg = AnalysisConfig(load=LoadConfig(device="cpu"), data=data, block_sizes=(1, 2, 8, 16))
        with tempfile.TemporaryDirectory() as tmp:
            seconds = timed(lambda: run_analysis(acfg, out=Path(tmp) / "run", force=True))
        rows.append(("analysis (16 + 2 windows)", seconds, cost.analysis(DecoderAdapter(model).arch, 16, 2,
                                                                          (1, 2, 8, 16))))
    print(f"\nunit: one window forward = {unit:.3f} s ({args.threads} thread(s)); student share p = {p:.3f}")
    print(f"{'work':28} {'measured s':>11} {'model s':>9} {'ratio':>6}")
    for name, seconds, units in rows:
        print(f"{name:28} {seconds:11.1f} {units * unit:9.1f} {seconds / (units * unit):6.2f}")


if __name__ == "__main__":
    main()
