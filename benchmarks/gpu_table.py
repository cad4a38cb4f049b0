"""The table that ends benchmarks/gpu.sh: bench and analyze results against the GPU targets.

    python benchmarks/gpu_table.py OUT_DIR [gpu|cpu]

Reads OUT_DIR/bench.json and OUT_DIR/analyze/metrics.json (either may be missing: a step that
failed or timed out is reported as such, with the tail of its log).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check(value: float, target: float, higher_is_better: bool, gpu: bool) -> str:
    if not gpu:
        return "n/a (CPU)"
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"


def bench_rows(b: dict, gpu: bool) -> list[tuple[str, str, str]]:
    modes = b["modes"]
    rows = [("device", f"{b['device_name']}, {b['dtype']}", ""),
            ("model", (f"{b['model']} ({b['params'] / 1e9:.2f}B, random init), batch {b['batch_size']} x "
                      f"{b['seq_len']}"), "")]
    for name, m in modes.items():
        rows.append((f"{name} tokens/s", (f"{m['tokens_per_s']:,.0f}  (MFU {m['mfu']:.1%}, first call "
                                        f"{m['first_call_s']:.0f}s, graphs/breaks {m['graphs']}/{m['graph_breaks']})"), ""))
    speed = b["analysis_vs_plain_speed"]
    mfu = modes["analysis"]["mfu"]
    proj = b["projected_paper_calibration_s"]
    rows += [("analysis speed / plain" + (" (compiled)" if b["compile"] else ""), f"{speed:.3f}x  (target >= 0.95)", _check(speed, 0.95, True, gpu)),
             ("analysis-pass MFU", f"{mfu:.1%}  (target >= 45%)", _check(mfu, 0.45, True, gpu)),
             ("projected 1024 x 4096 calibration", f"{proj:,.0f} s  (target < 600 s)", _check(proj, 600, False, gpu)),
             ("measured matmul peak", f"{b['matmul_peak_flops'] / 1e12:.1f} TFLOP/s ({b['matmul_size']}^3)", ""),
             ("peak memory (analysis)", f"{modes['analysis']['peak_memory_bytes'] / 2**30:.1f} GiB", "")]
    if "compile_speedup" in b:
        rows.append(("compiled vs eager", f"{b['compile_speedup']:.2f}x faster", ""))
    return rows


def analyze_rows(m: dict, gpu: bool) -> list[tuple[str, str, str]]:
    t = m["timings"]
    comp = t.get("compile")
    graphs = f"{comp['graphs']} graph(s), {comp['graph_breaks']} break(s)" if comp else "not compiled"
    ok = _check(1.0 if comp and comp["graphs"] == 1 and comp["graph_breaks"] == 0 else 0.0, 1.0, True, gpu)
    return [("analyze calibration (incl. compile)", (f"{t['calibration_tokens_per_s']:,.0f} tokens/s, batch {t['batch_size']}, "
                                    f"{m['data']['config']['calib_samples']} samples"), ""),
            ("analyze compile: graphs/breaks", graphs + "  (target 1/0: no recompiles)", ok),
            ("analyze wall time", f"{t['total_s']:.0f} s (eval + sensitivity {t['eval_s'] + t['sensitivity_s']:.0f} s)", "")]


def _failure(out: Path, step: str) -> list[tuple[str, str, str]]:
    status = (out / f"{step}.status").read_text().strip() if (out / f"{step}.status").exists() else "did not run"
    log = (out / f"{step}.log").read_text().strip().splitlines()[-3:] if (out / f"{step}.log").exists() else []
    return [(step, status, "FAIL")] + [("", line[:110], "") for line in log]


def main() -> None:
    out = Path(sys.argv[1])
    gpu = (sys.argv[2] if len(sys.argv) > 2 else "gpu") == "gpu"
    bench, analyze = _load(out / "bench.json"), _load(out / "analyze" / "metrics.json")
    rows = bench_rows(bench, gpu) if bench else _failure(out, "bench")
    rows += analyze_rows(analyze, gpu) if analyze else _failure(out, "analyze")
    width = max(len(r[0]) for r in rows)
    print(f"\n== GPU checks ({'GPU' if gpu else 'DEGRADED CPU MODE: targets not checked'}) ==")
    for name, value, verdict in rows:
        print(f"{name:<{width}}  {value}  {verdict}".rstrip())


if __name__ == "__main__":
    main()
