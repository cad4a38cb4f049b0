"""Minitron Lab command line: wires the library together, holds no logic of its own.

    python cli.py models [--json]
    python cli.py analyze [--model NAME] [--data SRC] ...
    python cli.py prune --model TEACHER [--target 8B | --hidden H --ffn F --heads N --layers L] --out DIR
    python cli.py search --model 15B --params 8B [--tolerance 0.05]
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.console import Console
from rich.table import Table

from analysis.errors import MinitronError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Minitron Lab: where a model's capacity lives, Minitron-style compression, honest cards.")
console = Console(stderr=True)

MODEL_HELP = "registry name or alias (8B, 4B, 15B, smollm2-135m), Hugging Face id, local directory or .gguf"


def _load_config(model, dtype, device, random_init, trust_remote_code=False, allow_pickle=False,
                 download=False):
    from analysis.loading import LoadConfig

    return LoadConfig(model=model, dtype=dtype, device=device, random_init=random_init,
                      trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, allow_download=download)


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
    data: str = typer.Option("pydoc", "--data", help="pydoc (built-in), a .txt/.jsonl file or folder, or a HF dataset"),
    samples: int = typer.Option(64, "--samples", help="calibration samples"),
    eval_samples: int = typer.Option(4, "--eval-samples", help="held-out samples (perplexity, sensitivity)"),
    seq_len: int = typer.Option(128, "--seq-len", help="tokens per sample"),
    batch_size: int = typer.Option(8, "--batch-size"),
    block_sizes: str = typer.Option("1,2,4,8", "--block-sizes", help="contiguous block sizes for drop curves"),
    pre_activation: bool = typer.Option(False, "--pre-activation", help="neuron importance before the activation"),
    dtype: str = typer.Option("auto", "--dtype"),
    device: str = typer.Option("auto", "--device"),
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
    from analysis.runner import AnalysisConfig, run_analysis

    sizes = tuple(int(s) for s in block_sizes.split(",") if s.strip())
    cfg = AnalysisConfig(
        load=_load_config(model, dtype, device, random_init, trust_remote_code, allow_pickle, download),
        data=DataConfig(source=data, seq_len=seq_len, calib_samples=samples, eval_samples=eval_samples, seed=seed),
        batch_size=batch_size, block_sizes=sizes, pre_activation=pre_activation, compile=compile,
    )
    result_dir = run_analysis(cfg, out=out, force=force, resume=resume, console=console)
    if figures:
        _draw_figures(result_dir)
    console.print(f"results: {result_dir}")


def _draw_figures(run_dir) -> None:
    try:
        from figures.render import draw_run
    except ImportError:
        return
    written = draw_run(run_dir)
    console.print(f"figures: {len(written)} files in {run_dir / 'figures'}")


@app.command()
def prune(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help=MODEL_HELP),
    out: str = typer.Option(..., "--out", help="output model directory"),
    run: str = typer.Option(None, "--run", help="analysis run directory (default: analyse on the fly)"),
    target: str = typer.Option(None, "--target", help="take the shape of a registry model (8B, 4B)"),
    hidden: int = typer.Option(None, "--hidden", help="embedding channels to keep"),
    ffn: int = typer.Option(None, "--ffn", help="MLP neurons to keep per layer"),
    heads: int = typer.Option(None, "--heads", help="query heads to keep per layer (multiple of kv heads)"),
    layers: int = typer.Option(None, "--layers", help="decoder layers to keep"),
    depth_metric: str = typer.Option("bi", "--depth-metric", help="bi (block importance) or drop-loss"),
    aggregation: str = typer.Option("l2_mean", "--aggregation", help="batch_seq aggregation, e.g. l2_mean"),
    dry_run: bool = typer.Option(False, "--dry-run", help="write config.json only and print the parameter count"),
    data: str = typer.Option("pydoc", "--data", help="text for on-the-fly analysis and perplexity"),
    samples: int = typer.Option(32, "--samples", help="calibration samples (on-the-fly analysis)"),
    eval_samples: int = typer.Option(8, "--eval-samples", help="held-out samples for perplexity"),
    seq_len: int = typer.Option(256, "--seq-len"),
    batch_size: int = typer.Option(8, "--batch-size"),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="zero-shot perplexity before and after"),
    dtype: str = typer.Option("auto", "--dtype"),
    device: str = typer.Option("auto", "--device"),
    random_init: bool = typer.Option(False, "--random-init", help="random teacher weights (shape/speed work)"),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="replace an existing --out directory"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle"),
    download: bool = typer.Option(False, "--download"),
):
    """Minitron-style structured pruning into a plain Hugging Face model directory."""
    from analysis.data import DataConfig
    from analysis.export import export_config, export_model
    from analysis.prune import DEPTH_METRICS, PruneTarget
    from analysis.prune_run import PruneConfig
    from analysis.prune_run import dry_run as shapes_only
    from analysis.prune_run import prune as run_prune

    if depth_metric not in DEPTH_METRICS:
        raise MinitronError(f"unknown --depth-metric '{depth_metric}'; choose from {', '.join(DEPTH_METRICS)}")
    load = _load_config(model, dtype, device, random_init, trust_remote_code, allow_pickle, download)
    load.seed = seed
    cfg = PruneConfig(
        load=load, target=PruneTarget(hidden=hidden, ffn=ffn, heads=heads, layers=layers), target_name=target,
        run=run, depth_metric=depth_metric, aggregation=aggregation, evaluate=evaluate, batch_size=batch_size,
        data=DataConfig(source=data, seq_len=seq_len, calib_samples=samples, eval_samples=eval_samples, seed=seed),
    )
    if dry_run:
        config, recipe = shapes_only(cfg)
        export_config(config, out, recipe, force=force)
    else:
        pruned, tokenizer, recipe = run_prune(cfg, console=console)
        export_model(pruned, tokenizer, out, recipe, force=force)
    _print_prune_summary(recipe, out)


def _print_prune_summary(recipe: dict, out: str) -> None:
    t = recipe["target"]
    console.print(f"{recipe['teacher']} ({recipe['teacher_params'] / 1e9:.3f}B) -> hidden {t['hidden']}, "
                  f"ffn {t['ffn']}, heads {t['heads']}, layers {t['layers']}")
    print(f"params: {recipe['params']} ({recipe['params'] / 1e9:.3f}B)")
    if recipe["ppl_before"] is not None:
        print(f"perplexity: {recipe['ppl_before']:.3f} -> {recipe['ppl_after']:.3f}")
    console.print(f"written: {out}")


@app.command()
def search(
    model: str = typer.Option("15B", "--model", "-m", help=MODEL_HELP),
    params: str = typer.Option("8B", "--params", help="parameter budget: 8B, 4B or a number (7.5e9)"),
    tolerance: float = typer.Option(0.05, "--tolerance", help="relative distance to the budget"),
    rank_: bool = typer.Option(False, "--rank", help="rank by zero-shot loss after pruning (needs weights)"),
    run: str = typer.Option(None, "--run", help="analysis run for --rank"),
    aggregation: str = typer.Option("l2_mean", "--aggregation"),
    depth_metric: str = typer.Option("bi", "--depth-metric"),
    eval_samples: int = typer.Option(8, "--eval-samples"),
    seq_len: int = typer.Option(256, "--seq-len"),
    dtype: str = typer.Option("auto", "--dtype"),
    device: str = typer.Option("auto", "--device"),
):
    """Candidate architectures of the paper's search space within a parameter budget."""
    import dataclasses

    from analysis.configs import from_hf_config
    from analysis.loading import load_model
    from analysis.search import enumerate_candidates, parse_budget, space_for

    budget = parse_budget(params)
    load = _load_config(model, dtype, "meta", True)
    teacher = from_hf_config(load_model(load).model.config)
    candidates = enumerate_candidates(teacher, budget, space_for(budget), tolerance)
    losses = None
    if rank_ and candidates:
        losses = _rank_candidates(dataclasses.replace(load, device=device, random_init=False), candidates,
                                  run, aggregation, depth_metric, eval_samples, seq_len)
    _print_candidates(candidates, budget, losses)


def _rank_candidates(load, candidates, run, aggregation, depth_metric, eval_samples, seq_len):
    from analysis.data import DataConfig, build_splits
    from analysis.loading import load_model
    from analysis.prune import importance_from_run
    from analysis.results import load_run
    from analysis.search import rank

    if run is None:
        raise MinitronError("--rank needs --run DIR (an analysis run of the teacher)")
    loaded = load_model(load)
    if loaded.tokenizer is None:
        raise MinitronError(f"{load.model}: no tokenizer, cannot measure the zero-shot loss")
    ids = build_splits(loaded.tokenizer, DataConfig(seq_len=seq_len, calib_samples=0, eval_samples=eval_samples)).eval
    return rank(loaded.model, candidates, importance_from_run(load_run(run), aggregation, depth_metric), ids)


def _print_candidates(candidates, budget: float, losses) -> None:
    table = Table(title=f"Candidates within the budget of {budget / 1e9:.3g}B")
    for col in ("#", "layers", "heads", "MLP factor", "hidden", "MLP", "params", "vs budget") + (("loss",) if losses else ()):
        table.add_column(col, justify="right")
    order = sorted(range(len(candidates)), key=lambda i: losses[i]) if losses else range(len(candidates))
    for n, i in enumerate(order, 1):
        c = candidates[i]
        row = [str(n), str(c.arch.layers), str(c.arch.heads), f"{c.mlp_factor:g}", str(c.arch.hidden),
               str(c.arch.mlp), f"{c.params / 1e9:.3f}B", f"{c.delta(budget):+.1%}"]
        table.add_row(*row, *((f"{losses[i]:.4f}",) if losses else ()))
    Console().print(table)
    print(f"{len(candidates)} candidates")


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        app(standalone_mode=False)
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
