"""Side by side on the embedded default, CPU: what the analysis costs on top of the model.

    python benchmarks/analysis_overhead.py [--batch 4] [--seq-len 128] [--pairs 5] [--threads 1]

1. plain forward vs analysis pass (hooks on + fold), interleaved A/B so that both see the same
   machine load; the ratio is the median of per-pair ratios (target: at most 1.05).
2. layer sensitivity: prefix reuse (``drop_block_nll``, one full pass + every single-layer drop
   resumed from the stored boundary state) vs the naive re-run per dropped layer
   (``drop_block_nll_naive``) (target: at most 0.6x the time).
3. peak resident memory of each phase above the loaded model, each in a fresh process (Linux /proc).

Shared CPUs are noisy: rerun and read the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from analysis.evaluation.loss import head_nll
from analysis.importance.collect import Collector
from analysis.importance.sensitivity import drop_block_nll, drop_block_nll_naive, full_pass
from analysis.models.loading import LoadConfig, load_model


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM), so loading does not count."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib * 1024


def phase_peak_mib(phase: str, args) -> float:
    """Peak RSS of a fresh process running one phase once, above its RSS after loading the model.

    A fresh process because the allocator keeps freed pages: in one process every phase after
    the first would look free.
    """
    cmd = [sys.executable, __file__, "--phase", phase, "--threads", str(args.threads)]
    for k in ("batch", "seq_len", "sens_batch", "sens_seq_len"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _phases(ad, ids, sids) -> dict:
    """name -> callable running that phase once (the memory probes run one of them)."""
    L, collector = ad.num_layers, Collector(ad)

    def analysis():
        with collector.collecting():
            collector.begin(*ids.shape)
            ad.backbone(input_ids=ids, use_cache=False)
            collector.fold()

    def reuse():
        _, states = full_pass(ad, sids)
        for s in range(L):
            drop_block_nll(ad, states, sids, s, 1)

    def naive():
        head_nll(ad, ad.backbone(input_ids=sids, use_cache=False).last_hidden_state, sids)  # full-model NLL
        for s in range(L):
            drop_block_nll_naive(ad, sids, s, 1)
    return {"plain": lambda: ad.backbone(input_ids=ids, use_cache=False), "analysis": analysis,
            "reuse": reuse, "naive": naive}


def hooks_overhead(phases: dict, pairs: int) -> dict:
    """Median times of plain and analysis, and the median of per-pair ratios (interleaved A/B)."""
    phases["plain"](), phases["analysis"]()  # warm-up
    tp, ta = [], []
    for _ in range(pairs):  # interleaved: both see the same machine load
        tp.append(timed(phases["plain"]))
        ta.append(timed(phases["analysis"]))
    return {"plain_s": statistics.median(tp), "analysis_s": statistics.median(ta),
            "ratio": statistics.median(a / p for a, p in zip(ta, tp))}


def sensitivity(phases: dict) -> dict:
    t_reuse, t_naive = timed(phases["reuse"]), timed(phases["naive"])
    return {"reuse_s": t_reuse, "naive_s": t_naive, "ratio": t_reuse / t_naive}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--sens-batch", type=int, default=1)
    ap.add_argument("--sens-seq-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="1 is steadier on a shared machine")
    ap.add_argument("--phase", help=argparse.SUPPRESS)  # internal: run one phase, print its peak MiB
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(LoadConfig(device="cpu"))
    ad = lm.adapter
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, ad.config.vocab_size, (args.batch, args.seq_len), generator=g)
    sids = torch.randint(0, ad.config.vocab_size, (args.sens_batch, args.sens_seq_len), generator=g)
    phases = _phases(ad, ids, sids)
    if args.phase:
        with torch.no_grad():
            phases["plain"]()  # one-time costs (thread pools, kernels' scratch) are nobody's overhead
            reset_peak_rss()
            base = rss()
            phases[args.phase]()
        print((peak_rss() - base) / 2**20)
        return
    with torch.no_grad():
        h = hooks_overhead(phases, args.pairs)
        s = sensitivity(phases)
    mem = {p: phase_peak_mib(p, args) for p in ("plain", "analysis", "naive", "reuse")}
    load = os.getloadavg()[0]
    print(f"\n{lm.name}, CPU, {args.threads} thread(s), load average {load:.1f} on {os.cpu_count()} cores")
    print(f"{'':44}{'baseline':>12}{'ours':>12}{'ratio':>9}{'target':>9}")
    print(f"{'forward ' + f'{args.batch}x{args.seq_len}' + ': plain vs analysis pass':44}"
          f"{h['plain_s']:>11.3f}s{h['analysis_s']:>11.3f}s{h['ratio']:>8.3f}x{'<=1.05':>9}")
    print(f"{'sensitivity ' + f'{args.sens_batch}x{args.sens_seq_len}' + ', all layers: naive vs reuse':44}"
          f"{s['naive_s']:>11.3f}s{s['reuse_s']:>11.3f}s{s['ratio']:>8.3f}x{'<=0.6':>9}")
    print(f"{'peak RSS above the loaded model: plain vs analysis':50}{mem['plain']:>6.0f}MiB{mem['analysis']:>9.0f}MiB")
    print(f"{'peak RSS above the loaded model: naive vs reuse':50}{mem['naive']:>6.0f}MiB{mem['reuse']:>9.0f}MiB")


if __name__ == "__main__":
    main()
