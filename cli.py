"""Minitron Lab command line: wires the library together, holds no logic of its own.

    python cli.py models [--json]
    python cli.py analyze [--model NAME] [--data SRC] ...
    python cli.py bench [--model NAME] [--random-init] [--seq-len T] [--batch-size auto|N] [--json]
    torchrun --nproc-per-node N cli.py analyze ...
    python cli.py figures [--run DIR] [--out DIR]
    python cli.py card (--model M | --all) [--out DIR] [--template T] [--format md|html]
    python cli.py card --check PATH [--model M]
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from analysis.errors import MinitronError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Minitron Lab: where a model's capacity lives, Minitron-style compression, honest cards.")
console = Console(stderr=True)

MODEL_HELP = "registry name or alias (8B, 4B, 15B, smollm2-135m), Hugging Face id, local directory or .gguf"


def _load_config(model, dtype, device, random_init, trust_remote_code=False, allow_pickle=False,
                 download=False, device_map=None):
    from analysis.loading import LoadConfig

    return LoadConfig(model=model, dtype=dtype, device=device, random_init=random_init,
                      trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, allow_download=download,
                      device_map=device_map)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="print the registry as JSON")):
    """List the model registry with parameter counts computed from each architecture."""
    from analysis.registry import MODELS

    if as_json:
        print(json.dumps([m.to_json() for m in MODELS], indent=2))
        return
    table = Table(title="Minitron Lab model registry")
    for col in ("name", "aliases", "role", "HF id", "layers", "hidden", "heads/kv", "MLP", "vocab",
                "params", "non-emb"):
        table.add_column(col, justify="right" if col in ("layers", "hidden", "MLP", "vocab", "params", "non-emb") else "left")
    for m in MODELS:
        a, p = m.arch, m.arch.params()
        table.add_row(m.name, ", ".join(m.aliases), m.role, m.hf_id or "(local checkpoint only)",
                      str(a.layers), str(a.hidden), f"{a.heads}/{a.kv_heads}", str(a.mlp), str(a.vocab),
                      f"{p['total'] / 1e9:.3f}B", f"{p['non_embedding'] / 1e9:.3f}B")
    Console().print(table)


@app.command()
def analyze(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help=MODEL_HELP),
    data: str = typer.Option("pydoc", "--data",
                             help="pydoc (built-in), random (token ids, speed work), a .txt/.jsonl file or folder, or a HF dataset"),
    samples: int = typer.Option(64, "--samples", help="calibration samples"),
    eval_samples: int = typer.Option(4, "--eval-samples", help="held-out samples (perplexity, sensitivity)"),
    seq_len: int = typer.Option(128, "--seq-len", help="tokens per sample"),
    batch_size: str = typer.Option("8", "--batch-size", help="samples per forward, or auto (largest that fits)"),
    max_batch_size: int = typer.Option(None, "--max-batch-size", help="cap for --batch-size auto"),
    block_sizes: str = typer.Option("1,2,4,8", "--block-sizes", help="contiguous block sizes for drop curves"),
    pre_activation: bool = typer.Option(False, "--pre-activation", help="neuron importance before the activation"),
    dtype: str = typer.Option("auto", "--dtype"),
    device: str = typer.Option("auto", "--device"),
    device_map: str = typer.Option(None, "--device-map", help="auto: spread a model too big for one GPU over all GPUs"),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: on for CUDA)"),
    random_init: bool = typer.Option(False, "--random-init", help="random weights (shape/speed work)"),
    seed: int = typer.Option(0, "--seed"),
    out: str = typer.Option(None, "--out", help="output directory (default runs/<model>/<run-id>)"),
    force: bool = typer.Option(False, "--force", help="recompute even if a cached result exists"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="draw figures at the end"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="accept .bin (pickle) weights"),
    download: bool = typer.Option(False, "--download", help="allow Hugging Face hub downloads"),
):
    """Importance (heads, neurons, channels), layer sensitivity and perplexity in one streaming pass."""
    from analysis.data import DataConfig
    from analysis.distributed import world_from_env
    from analysis.perf import parse_batch_size
    from analysis.runner import AnalysisConfig, run_analysis

    sizes = tuple(int(s) for s in block_sizes.split(",") if s.strip())
    cfg = AnalysisConfig(
        load=_load_config(model, dtype, device, random_init, trust_remote_code, allow_pickle, download, device_map),
        data=DataConfig(source=data, seq_len=seq_len, calib_samples=samples, eval_samples=eval_samples, seed=seed),
        batch_size=parse_batch_size(batch_size), max_batch_size=max_batch_size, block_sizes=sizes,
        pre_activation=pre_activation, compile=compile,
    )
    result_dir = run_analysis(cfg, out=out, force=force, resume=resume, console=console)
    if world_from_env()[0] != 0:  # under torchrun only rank 0 writes and reports
        return
    if figures:
        _draw_figures(result_dir)
    console.print(f"results: {result_dir}")


@app.command()
def bench(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help=MODEL_HELP),
    random_init: bool = typer.Option(False, "--random-init", help="random weights (no checkpoint needed)"),
    seq_len: int = typer.Option(None, "--seq-len", help="tokens per sample (default 4096 on CUDA, 64 on CPU)"),
    batch_size: str = typer.Option("auto", "--batch-size", help="samples per step, or auto"),
    max_batch_size: int = typer.Option(None, "--max-batch-size", help="cap for --batch-size auto"),
    steps: int = typer.Option(5, "--steps", help="timed steps per mode (median reported)"),
    warmup: int = typer.Option(2, "--warmup", help="untimed steps first (the first holds compile time)"),
    dtype: str = typer.Option("auto", "--dtype"),
    device: str = typer.Option("auto", "--device"),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: on for CUDA)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
):
    """Time the plain forward, the analysis pass (hooks on) and eager; tokens/s, MFU, memory, projection."""
    from analysis.bench import BenchConfig, print_report, run_bench
    from analysis.perf import parse_batch_size

    cfg = BenchConfig(load=_load_config(model, dtype, device, random_init), seq_len=seq_len,
                      batch_size=parse_batch_size(batch_size), max_batch_size=max_batch_size, steps=steps,
                      warmup=warmup, compile=compile)
    report = run_bench(cfg, log=lambda msg: console.print(f"bench: {msg}", highlight=False))
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report, Console(width=max(Console().width, 120)))  # the mode table needs ~110 columns


def _draw_figures(run_dir) -> None:
    try:
        from figures.render import draw_run
    except ImportError:
        return
    written = draw_run(run_dir)
    console.print(f"figures: {len(written)} files in {run_dir / 'figures'}")


@app.command()
def figures(
    run: str = typer.Option(None, "--run", help="an analysis run directory (default: registry figures only)"),
    out: str = typer.Option(None, "--out", help="output directory (default: <run>/figures, or figures/out)"),
):
    """Draw figures as PNG and SVG: a run's analysis figures, or the family's registry figures."""
    from figures.render import draw_family, draw_run

    written = draw_run(run, out) if run else draw_family(out or "figures/out")
    for path in written:
        print(path)


@app.command()
def card(
    model: str = typer.Option(None, "--model", "-m", help="registry name/alias (8B, 4B, 15B), model or run directory"),
    all_models: bool = typer.Option(False, "--all", help="cards for Nemotron-4 15B, Minitron-8B and Minitron-4B"),
    out: str = typer.Option(None, "--out", help="output directory (default cards/out/<model>/)"),
    template: str = typer.Option(None, "--template", help="your own jinja2 template (rendered in a sandbox)"),
    fmt: str = typer.Option("md", "--format", help="md (README.md + figures) or html (one self-contained file)"),
    check: str = typer.Option(None, "--check", help="check a card's architecture claims instead of writing one"),
    runs: str = typer.Option("runs", "--runs", help="where analysis runs live (runs/<model>/<run-id>/)"),
):
    """Write a model card (front matter, architecture from config, published numbers, analysis), or check one."""
    if check:
        _check_card(check, model)
        return
    from cards.publish import FAMILY, write_cards

    if bool(model) == all_models:
        raise MinitronError("pass exactly one of --model M or --all (or --check PATH)")
    for path in write_cards(list(FAMILY) if all_models else [model], out, template, fmt, runs):
        print(path)


def _check_card(path: str, model: str | None) -> None:
    from cards.check import check_card

    claims, bad = check_card(path, model)
    if not claims:
        raise MinitronError(f"{path}: no architecture claims found (pass --model if the card names no model)")
    for d in bad:
        print(f"{path}:{d}")
    summary = f"{len(claims)} architecture claims checked, {len(bad)} disagree"
    console.print(summary)
    if bad:
        raise typer.Exit(1)


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        code = app(standalone_mode=False)  # without standalone mode, typer.Exit(n) comes back as n
        if isinstance(code, int) and code:
            sys.exit(code)
    except MinitronError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted; rerun with --resume to continue")
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
