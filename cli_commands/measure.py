"""Commands that measure a model: models, analyze, bench, perplexity, figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from analysis.core import validate as V
from cli_commands.options import (
    COMPILE_MODES,
    AllowPickle,
    Compile,
    Data,
    Device,
    Download,
    Dtype,
    Force,
    MaxBatch,
    Model,
    RandomInit,
    Samples,
    Seed,
    SeqLen,
    TrustRemoteCode,
    _batch,
    _choice,
    _load,
    _protocols,
    _wide,
    app,
    checked,
    console,
    say,
)


@app.command(rich_help_panel="Measure a model")
def models(as_json: Annotated[bool, typer.Option("--json", help="print the registry as JSON")] = False):
    """List the model registry with parameter counts computed from each architecture."""
    from analysis.models.registry import MODELS

    if as_json:
        print(json.dumps([m.to_json() for m in MODELS], indent=2))
        return
    table = Table(title="Minitron Lab model registry")
    numeric = ("layers", "hidden", "MLP", "vocab", "params", "non-emb")
    for col in ("name", "aliases", "role", "HF id", "layers", "hidden", "heads/kv", "MLP", "vocab", "params", "non-emb"):
        table.add_column(col, justify="right" if col in numeric else "left")
    for m in MODELS:
        a, p = m.arch, m.arch.params()
        table.add_row(m.name, ", ".join(m.aliases[:2]), m.role, m.hf_id or "(local checkpoint only)",
                      str(a.layers), str(a.hidden), f"{a.heads}/{a.kv_heads}", str(a.mlp), str(a.vocab),
                      f"{p['total'] / 1e9:.3f}B", f"{p['non_embedding'] / 1e9:.3f}B")
    _wide().print(table)


@app.command(rich_help_panel="Measure a model")
def analyze(
    model: Model = "smollm2-135m",
    data: Data = "pydoc",
    samples: Samples = 64,
    eval_samples: Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                              help="held-out samples (perplexity, sensitivity)")] = 4,
    seq_len: SeqLen = 128,
    batch_size: Annotated[str, typer.Option("--batch-size", callback=_batch, help="samples per forward, or auto")] = "8",
    max_batch_size: MaxBatch = None,
    block_sizes: Annotated[str | None, typer.Option(
        "--block-sizes", help="contiguous block sizes for drop curves (default 1,2,4,8: those the model has)")] = None,
    pre_activation: Annotated[bool, typer.Option("--pre-activation", help=(
        "neuron importance before the activation, the paper's X W1^T (gated MLPs: gate_proj alone); default: "
        "after it, Model Optimizer's choice"))] = False,
    bootstrap: Annotated[int, typer.Option("--bootstrap", callback=checked(V.BOOTSTRAP),
                                           help="resample the calibration windows N times: how stable the kept "
                                           "sets are (0: off)")] = 0,
    dtype: Dtype = "auto",
    device: Device = "auto",
    device_map: Annotated[str | None, typer.Option("--device-map", callback=_choice("auto"),
                                                   help="auto: spread a model too big for one GPU")] = None,
    compile: Compile = "auto",
    random_init: RandomInit = False,
    seed: Seed = 0,
    out: Annotated[str | None, typer.Option("--out", help="output directory (default runs/<model>/<run-id>)")] = None,
    force: Annotated[bool, typer.Option("--force", help="recompute even if a cached result exists; write into a "
                                        "directory minitron-lab did not make")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run")] = False,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="draw figures at the end")] = True,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Download = False,
):
    """Importance (heads, neurons, channels), layer sensitivity and perplexity in one streaming pass."""
    from analysis.core.distributed import world_from_env
    from analysis.data import DataConfig
    from analysis.importance.pipeline import AnalysisConfig, run_analysis

    cfg = AnalysisConfig(
        load=_load(model, dtype, device, random_init, trust_remote_code, allow_pickle, download, device_map),
        data=DataConfig(source=data, seq_len=seq_len, calib_samples=samples, eval_samples=eval_samples, seed=seed,
                        download=download),
        batch_size=batch_size, max_batch_size=max_batch_size,
        block_sizes=V.parse_int_list("--block-sizes", block_sizes, V.BLOCK_SIZE) if block_sizes is not None else None,
        pre_activation=pre_activation, compile=compile, bootstrap=bootstrap, bootstrap_seed=seed,
    )
    result_dir = run_analysis(cfg, out=out, force=force, resume=resume, console=console)
    if world_from_env()[0] != 0:  # under torchrun only rank 0 writes and reports
        return
    if figures:
        _draw_run(result_dir, force)
    say(f"results: {result_dir}")


@app.command(rich_help_panel="Measure a model")
def bench(
    model: Model = "smollm2-135m",
    random_init: RandomInit = False,
    seq_len: Annotated[int | None, typer.Option("--seq-len", callback=checked(V.BENCH_SEQ_LEN),
                                                help="tokens per sample (default 4096 on CUDA, 64 on CPU)")] = None,
    batch_size: Annotated[str, typer.Option("--batch-size", callback=_batch, help="samples per step, or auto")] = "auto",
    max_batch_size: MaxBatch = None,
    steps: Annotated[int, typer.Option("--steps", callback=checked(V.STEPS),
                                       help="timed steps per mode (median reported)")] = 5,
    warmup: Annotated[int, typer.Option("--warmup", callback=checked(V.WARMUP),
                                        help="untimed steps first (the first holds compile time)")] = 2,
    dtype: Dtype = "auto",
    device: Device = "auto",
    compile: Annotated[str, typer.Option(
        "--compile", callback=_choice(*COMPILE_MODES, "all"),
        help="variants besides eager: auto (regional on CUDA), regional, full, all, off")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON on stdout")] = False,
):
    """Time the plain forward, the analysis pass (hooks on) and eager; tokens/s, MFU, memory, projection."""
    from analysis.importance.bench import BenchConfig, print_report, run_bench

    cfg = BenchConfig(load=_load(model, dtype, device, random_init), seq_len=seq_len,
                      batch_size=batch_size, max_batch_size=max_batch_size, steps=steps,
                      warmup=warmup, compile=compile)
    report = run_bench(cfg, log=lambda msg: say(f"bench: {msg}"))
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report, Console(width=max(Console().width, 120)))  # the mode table needs ~110 columns


@app.command(rich_help_panel="Measure a model")
def perplexity(
    model: Model = "smollm2-135m",
    data: Data = "pydoc",
    protocol: Annotated[list[str] | None, typer.Option(
        "--protocol", callback=_protocols, help="hf-stride (Hugging Face fixed-length recipe) or lm-eval (lm-evaluation-harness "
        "loglikelihood_rolling); repeat for several (default: both)")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", callback=checked(V.SEQ_LEN),
                                         help="tokens per window (the model's context at most)")] = 512,
    stride: Annotated[int | None, typer.Option("--stride", callback=checked(V.STRIDE),
                                               help="hf-stride: tokens between window starts (default --seq-len)")] = None,
    max_chars: Annotated[int | None, typer.Option("--max-chars", callback=checked(V.MAX_CHARS),
                                                  help="score only the first N characters of the text")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH), help="windows per forward")] = 4,
    dtype: Dtype = "auto",
    device: Device = "auto",
    out: Annotated[str | None, typer.Option("--out", help="write perplexity.json (results + provenance) here")] = None,
    force: Force = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Download = False,
):
    """Perplexity of a whole text (one document) under named protocols, comparable with the tools that define them."""
    from analysis.core.io import check_output, output_dir, write_json
    from analysis.data import DataConfig
    from analysis.evaluation.perplexity import PROTOCOLS, PerplexityJob, run_perplexity

    protocols = tuple(protocol or PROTOCOLS)
    job = PerplexityJob(load=_load(model, dtype, device, False, trust_remote_code, allow_pickle, download),
                        data=DataConfig(source=data, max_chars=max_chars, download=download), protocols=protocols, seq_len=seq_len,
                        stride=stride, batch_size=batch_size)  # checks the protocols and sizes
    if out:
        check_output(out, force)  # before any work
    doc = run_perplexity(job, progress=True)
    table = Table(title=f"{doc['model']['name']} on {data} ({doc['data']['chars']:,} characters, one document)")
    for col in ("protocol", "window", "tokens", "scored", "token ppl", "word ppl", "byte ppl", "bits/byte"):
        table.add_column(col, justify="left" if col == "protocol" else "right")
    for name, r in doc["results"].items():
        extra = [f"{r[k]:.4f}" if k in r else "-" for k in ("word_perplexity", "byte_perplexity", "bits_per_byte")]
        window = str(r["seq_len"]) + (f"/{r['stride']}" if r["stride"] and r["stride"] != r["seq_len"] else "")
        table.add_row(name, window, f"{r['tokens']:,}", f"{r['scored']:,}", f"{r['token_perplexity']:.4f}", *extra)
    _wide().print(table)
    if out:
        with output_dir(out, "perplexity") as tmp:
            write_json(tmp / "perplexity.json", doc)
        say(f"written: {Path(out) / 'perplexity.json'}")


def _draw_run(run_dir, force: bool = False) -> None:
    from figures.render import draw_run, run_figures_current

    if not force and run_figures_current(run_dir):  # a cached run keeps the figures drawn from the same numbers
        say(f"figures: up to date in {Path(run_dir) / 'figures'}")
        return
    written = draw_run(run_dir, force=force)
    say(f"figures: {len(written)} files in {Path(run_dir) / 'figures'}")


@app.command(rich_help_panel="Measure a model")
def figures(
    run: Annotated[str | None, typer.Option("--run", help="an analysis run directory (default: registry figures)")] = None,
    out: Annotated[str | None, typer.Option("--out", help="output directory (default: <run>/figures, or figures/out)")] = None,
    force: Force = False,
):
    """Draw figures as PNG and SVG: a run's analysis figures, or the family's registry figures."""
    from figures.render import DEFAULT_FAMILY_OUT, draw_family, draw_run

    written = draw_run(run, out, force=force) if run else draw_family(out or DEFAULT_FAMILY_OUT, force=force)
    for path in written:
        print(path)
