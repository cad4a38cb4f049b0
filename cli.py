"""Minitron Lab command line: wires the library together, holds no logic of its own.

    python cli.py models [--json]
    python cli.py analyze [--model NAME] [--data SRC] ...
    python cli.py bench [--model NAME] [--random-init] [--seq-len T] [--batch-size auto|N] [--json]
    torchrun --nproc-per-node N cli.py analyze ...
    python cli.py figures [--run DIR] [--out DIR]
    python cli.py card (--model M | --all) [--out DIR] [--template T] [--format md|html]
    python cli.py card --check PATH [--model M]
    python cli.py distill --student DIR [--teacher NAME] [--steps N] [--finetune] ...
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

from analysis.core.errors import MinitronError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Minitron Lab: where a model's capacity lives, Minitron-style compression, honest cards.")
console = Console(stderr=True)

MODEL_HELP = "registry name or alias (8B, 4B, 15B, smollm2-135m), Hugging Face id, local directory or .gguf"


def _load_config(model, dtype, device, random_init, trust_remote_code=False, allow_pickle=False,
                 download=False, device_map=None):
    from analysis.models.loading import LoadConfig

    return LoadConfig(model=model, dtype=dtype, device=device, random_init=random_init,
                      trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, allow_download=download,
                      device_map=device_map)


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="print the registry as JSON")):
    """List the model registry with parameter counts computed from each architecture."""
    from analysis.models.registry import MODELS

    if as_json:
        print(json.dumps([m.to_json() for m in MODELS], indent=2))
        return
    table = Table(title="Minitron Lab model registry")
    for col in ("name", "aliases", "role", "HF id", "layers", "hidden", "heads/kv", "MLP", "vocab",
                "params", "non-emb"):
        table.add_column(col, justify="right" if col in ("layers", "hidden", "MLP", "vocab", "params", "non-emb") else "left")
    for m in MODELS:
        a, p = m.arch, m.arch.params()
        table.add_row(m.name, ", ".join(m.aliases[:2]), m.role, m.hf_id or "(local checkpoint only)",
                      str(a.layers), str(a.hidden), f"{a.heads}/{a.kv_heads}", str(a.mlp), str(a.vocab),
                      f"{p['total'] / 1e9:.3f}B", f"{p['non_embedding'] / 1e9:.3f}B")
    Console(width=None if sys.stdout.isatty() else 180).print(table)


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
    from analysis.core.distributed import world_from_env
    from analysis.core.perf import parse_batch_size
    from analysis.data import DataConfig
    from analysis.importance.pipeline import AnalysisConfig, run_analysis

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
    from analysis.core.perf import parse_batch_size
    from analysis.importance.bench import BenchConfig, print_report, run_bench

    cfg = BenchConfig(load=_load_config(model, dtype, device, random_init), seq_len=seq_len,
                      batch_size=parse_batch_size(batch_size), max_batch_size=max_batch_size, steps=steps,
                      warmup=warmup, compile=compile)
    report = run_bench(cfg, log=lambda msg: console.print(f"bench: {msg}", highlight=False))
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report, Console(width=max(Console().width, 120)))  # the mode table needs ~110 columns


def _draw_figures(run_dir) -> None:
    from figures.render import draw_run

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


@app.command()
def distill(
    student: str = typer.Option(..., "--student", "-s", help="the model to train, usually a pruned directory"),
    teacher: str = typer.Option("smollm2-135m", "--teacher", "-t", help=MODEL_HELP),
    data: str = typer.Option("pydoc", "--data", help="pydoc (built-in), a .txt/.jsonl file or folder, or a HF dataset"),
    steps: int = typer.Option(100, "--steps", help="optimizer steps"),
    seq_len: int = typer.Option(256, "--seq-len", help="tokens per window"),
    batch_size: int = typer.Option(4, "--batch-size", help="windows per micro-batch"),
    grad_accum: int = typer.Option(1, "--grad-accum", help="micro-batches per optimizer step"),
    lr: float = typer.Option(1e-4, "--lr", help="peak learning rate"),
    min_lr: float = typer.Option(1e-5, "--min-lr", help="end of the cosine decay"),
    warmup: int = typer.Option(10, "--warmup", help="linear warmup steps"),
    kd_weight: float = typer.Option(1.0, "--kd-weight", help="weight of KL(teacher || student)"),
    clm_weight: float = typer.Option(0.0, "--clm-weight", help="weight of next-token cross-entropy"),
    finetune: bool = typer.Option(False, "--finetune", help="plain CLM fine-tuning (kd 0, clm 1) for comparison"),
    eval_every: int = typer.Option(20, "--eval-every", help="held-out evaluation every N steps (0: start/end)"),
    eval_samples: int = typer.Option(8, "--eval-samples", help="held-out windows"),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", help="resumable checkpoint every N steps"),
    seed: int = typer.Option(0, "--seed", help="order of training windows"),
    data_seed: int = typer.Option(0, "--data-seed", help="window permutation (eval/train split), as analyze --seed"),
    dtype: str = typer.Option("auto", "--dtype", help="compute dtype (teacher weights; student stays float32)"),
    device: str = typer.Option("auto", "--device"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in --out"),
    out: str = typer.Option(None, "--out", help="output directory (default runs/distill/<student>-<mode>)"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="accept .bin (pickle) weights"),
    download: bool = typer.Option(False, "--download", help="allow Hugging Face hub downloads"),
):
    """Heal a pruned student by logit distillation from its teacher (or plain fine-tuning, --finetune)."""
    from pathlib import Path

    from analysis.data import DataConfig
    from analysis.models.loading import load_model
    from analysis.training import loop as kd

    cfg = kd.DistillConfig(steps=steps, seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                           min_lr=min_lr, warmup_steps=warmup, kd_weight=kd_weight, clm_weight=clm_weight,
                           eval_every=eval_every, eval_samples=eval_samples, checkpoint_every=checkpoint_every,
                           seed=seed, device=device, dtype=dtype)
    cfg = cfg.finetune() if finetune else cfg
    t = load_model(_load_config(teacher, dtype, device, False, trust_remote_code, allow_pickle, download))
    s = load_model(_load_config(student, "float32", device, False, trust_remote_code, allow_pickle, download))
    kd.check_compatible(t.model, s.model, (t.tokenizer, s.tokenizer))
    tokenizer = t.tokenizer or s.tokenizer
    if tokenizer is None:
        raise MinitronError("neither teacher nor student directory has a tokenizer; the data cannot be tokenized")
    splits = kd.training_splits(tokenizer, DataConfig(source=data, seed=data_seed), cfg,
                                getattr(s.model.config, "max_position_embeddings", None))
    out_dir = Path(out or f"runs/distill/{s.name}-{cfg.mode}")
    console.print(f"{cfg.mode}: {s.name} ({s.provenance['params'] / 1e6:.1f}M) from {t.name} "
                  f"({t.provenance['params'] / 1e6:.1f}M), {splits.calib.shape[0]} training windows -> {out_dir}")
    recipe = Path(student) / "prune_recipe.json"  # written by `prune`; the card reads it
    result = kd.distill(t.model, s.model, splits.calib, splits.eval, cfg, out_dir, resume=resume,
                        tokenizer=tokenizer, meta={"teacher": t.provenance, "student": s.provenance,
                                                   "data": splits.meta},
                        carry=(recipe,) if recipe.is_file() else ())
    before, after = result.final["before"], result.final["after"]
    console.print(f"held-out loss {before['loss']:.4f} -> {after['loss']:.4f} (ppl {before['ppl']:.2f} -> "
                  f"{after['ppl']:.2f}), KL {before['kl']:.4f} -> {after['kl']:.4f}; teacher loss "
                  f"{after['teacher_loss']:.4f}")
    from cards import write_card_for_directory

    write_card_for_directory(result.model_dir)
    console.print(f"model: {result.model_dir}")


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
    from analysis.pruning.export import export_config, export_model
    from analysis.pruning.pipeline import PruneConfig
    from analysis.pruning.pipeline import dry_run as shapes_only
    from analysis.pruning.pipeline import prune as run_prune
    from analysis.pruning.plan import DEPTH_METRICS, PruneTarget

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

    from analysis.models.configs import from_hf_config
    from analysis.models.loading import load_model
    from analysis.pruning.search import enumerate_candidates, parse_budget, space_for

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
    from analysis.importance.results import load_run
    from analysis.models.loading import load_model
    from analysis.pruning.plan import importance_from_run
    from analysis.pruning.search import rank

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
    Console(width=None if sys.stdout.isatty() else 180).print(table)
    print(f"{len(candidates)} candidates")


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
