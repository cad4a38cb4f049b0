"""The table that ends benchmarks/gpu.sh: one row per command and per target, PASS or MISS.

    python benchmarks/gpu_table.py WORK_DIR OUT_DIR

Reads the step log (WORK_DIR/steps.tsv) and each step's small result files, writes OUT_DIR/summary.json
(every number the table shows) and prints the table. A step that failed or timed out is a MISS with
its exit code; the tail of its log is in OUT_DIR/gpu.log.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TARGETS = {"analysis_vs_plain": 0.95, "mfu": 0.70, "projected_s": 600.0, "regional_compile_s": 30.0,
           "total_s": 360.0}
PRUNED_8B_PARAMS = 8_271_699_968  # Minitron-8B's architecture, counted by the registry


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _steps(work: Path) -> tuple[dict[str, tuple[int, int]], int | None]:
    steps, total = {}, None
    for line in (work / "steps.tsv").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            steps[parts[0]] = (int(parts[1]), int(parts[2]))
        elif line.startswith("total"):
            total = int(line.split()[1].rstrip("s"))
    return steps, total


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench_rows(b: dict) -> list[tuple[str, str, str]]:
    modes = b["modes"]
    rows = [("bench model", (f"{b['model']} ({b['params'] / 1e9:.2f}B, random init), {b['dtype']}, batch "
                            f"{b['batch_size']} x {b['seq_len']}, {b['device_name']}"), "")]
    for name, m in modes.items():
        rows.append((f"  {name}", (f"{m['tokens_per_s']:,.0f} tokens/s, MFU {m['mfu']:.1%}, first call "
                                 f"{m['first_call_s']:.1f}s, graphs/breaks {m['graphs']}/{m['graph_breaks']}, "
                                 f"peak {m['peak_memory_bytes'] / 2**30:.1f} GiB"), ""))
    fa, fp = b["fastest"]["analysis"], b["fastest"]["plain"]
    speed, mfu, proj = b["analysis_vs_plain_speed"], modes[fa]["mfu"], b["projected_paper_calibration_s"]
    rows += [(f"target: {fa} vs fastest plain ({fp})", f"{speed:.3f}x (>= {TARGETS['analysis_vs_plain']})",
              verdict(speed >= TARGETS["analysis_vs_plain"])),
             (f"target: MFU of {fa}", (f"{mfu:.1%} (>= {TARGETS['mfu']:.0%}, measured {b['matmul_peak_flops'] / 1e12:.0f} "
                                      "TFLOP/s matmul peak)"), verdict(mfu >= TARGETS["mfu"])),
             ("target: paper's 1024 x 4096 calibration", f"{proj:,.0f} s projected (< {TARGETS['projected_s']:.0f} s)",
              verdict(proj < TARGETS["projected_s"])),
             ("fastest analysis vs plain eager forward", f"{b['analysis_vs_eager_plain']:.3f}x", "")]
    if "analysis/regional" in modes:
        first = modes["analysis/regional"]["first_call_s"]
        rows.append(("target: regional compile, first call", f"{first:.1f} s (< {TARGETS['regional_compile_s']:.0f} s)",
                     verdict(first < TARGETS["regional_compile_s"])))
    return rows


def analyze_rows(work: Path) -> list[tuple[str, str, str]]:
    m = _load(work / "run15b" / "metrics.json")
    if m is None:
        return [("analyze 15B: metrics.json", "missing", "MISS")]
    t, comp = m["timings"], m["timings"].get("compile") or {}
    expected = 1 + len(m["config"]["block_sizes"]) + 1  # the layer graph + boundary arithmetic per ring depth
    ok = comp.get("mode") == "regional" and comp.get("graph_breaks") == 0 and comp.get("graphs") == expected
    return [("analyze 15B: compile", (f"{comp.get('mode')}, {comp.get('graphs')} graphs (expected {expected}), "
                                     f"{comp.get('graph_breaks')} breaks"), verdict(ok)),
            ("analyze 15B: throughput", (f"{t['calibration_tokens_per_s']:,.0f} calibration tokens/s incl. compile, "
                                        f"total {t['total_s']:.0f} s"), "")]


def prune_rows(work: Path) -> list[tuple[str, str, str]]:
    r = _load(work / "pruned8b" / "prune_recipe.json")
    if r is None:
        return [("prune 15B -> 8B: recipe", "missing", "MISS")]
    return [("prune 15B -> 8B: parameters", f"{r['params']:,} (Minitron-8B: {PRUNED_8B_PARAMS:,})",
             verdict(r["params"] == PRUNED_8B_PARAMS))]


def tiny_rows(work: Path) -> list[tuple[str, str, str]]:
    rows = []
    d = _load(work / "tiny-distilled" / "distill.json")
    if d is not None:
        b, a = d["final"]["before"], d["final"]["after"]
        rows.append(("tiny distill: KL to teacher", f"{b['kl']:.3f} -> {a['kl']:.3f} in {len(d['history'])} steps",
                     verdict(a["kl"] < b["kl"])))
    log = work / "tiny-search.log"
    lines = log.read_text().splitlines() if log.exists() else []
    count = next((ln for ln in reversed(lines) if ln.endswith("candidates")), "no count printed")
    rows.append(("tiny search --rank", count, verdict(count.split()[0].isdigit() and int(count.split()[0]) > 0)))
    return rows


def main() -> None:
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    steps, total = _steps(work)
    rows = [(f"{name} (exit {code}, {secs}s)", "", verdict(code == 0)) for name, (code, secs) in steps.items()]
    bench = _load(out / "bench.json")
    rows += bench_rows(bench) if bench else [("bench: report", "missing", "MISS")]
    rows += analyze_rows(work) + prune_rows(work) + tiny_rows(work)
    if total is not None:
        rows.append(("target: whole script", f"{total} s (< {TARGETS['total_s']:.0f} s)", verdict(total < TARGETS["total_s"])))
    versions = (work / "versions.txt").read_text().strip().replace("\n", "; ") if (work / "versions.txt").exists() else ""
    (out / "summary.json").write_text(json.dumps({"versions": versions, "steps": steps, "total_s": total,
                                                  "rows": rows}, indent=1))
    width = max(len(r[0]) for r in rows)
    print(f"\n== GPU checks: {versions} ==")
    for name, value, v in rows:
        print(f"{name:<{width}}  {v:<4}  {value}".rstrip())
    misses = sum(v == "MISS" for _, _, v in rows)
    print(f"{len([r for r in rows if r[2]])} checks, {misses} MISS")


if __name__ == "__main__":
    main()
