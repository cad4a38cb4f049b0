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
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from analysis.core import validate as V
from analysis.core.errors import MinitronError, MinitronWarning, one_line

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Minitron Lab: where a model's capacity lives, Minitron-style compression, honest cards.")
console = Console(stderr=True)
DEBUG = {"on": bool(os.environ.get("MINITRON_DEBUG"))}  # --debug: tracebacks for every error


def say(message: str) -> None:
    """One line on stderr, printed as written (rich markup would eat '[data]' in an install hint)."""
    console.print(escape(str(message)), highlight=False, soft_wrap=True)


# --- option rules: every numeric option has a range (analysis/core/validate.py), checked while parsing ---
def checked(bound: V.Bound):
    """Typer callback: the option's value if it lies in ``bound``, else a one-line error naming the option."""
    def callback(param: typer.CallbackParam, value):
        return bound.check(param.opts[0], value)
    return callback


def _choice(*choices: str):
    def callback(param: typer.CallbackParam, value):
        return value if value is None else V.check_choice(param.opts[0], value, choices)
    return callback


def _device(param: typer.CallbackParam, value: str) -> str:
    from analysis.models.loading import check_device

    return check_device(value, param.opts[0], compute=True)


def _batch(param: typer.CallbackParam, value: str) -> str:
    from analysis.core.perf import parse_batch_size

    return parse_batch_size(value)


def _aggregation(param: typer.CallbackParam, value: str) -> str:
    from analysis.importance.results import AGGREGATION_NAMES

    return V.check_choice(param.opts[0], value, AGGREGATION_NAMES)


# --- options shared by several commands -------------------------------------------------------------
MODEL_HELP = "registry name or alias (8B, 4B, 15B, smollm2-135m), Hugging Face id, local directory or .gguf"
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
Model = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
Data = Annotated[str, typer.Option(
    "--data", help="pydoc (built-in), random (token ids, speed work), a .txt/.jsonl file or folder, or a HF dataset")]
Dtype = Annotated[str, typer.Option("--dtype", callback=_choice(*DTYPES),
                                    help="auto (bf16 on CUDA, float32 on CPU), float32, bfloat16, float16")]
Device = Annotated[str, typer.Option("--device", callback=_device, help="auto (CUDA if present), cpu, cuda, cuda:N")]
RandomInit = Annotated[bool, typer.Option("--random-init", help="random weights (shape, memory and speed work)")]
Seed = Annotated[int, typer.Option("--seed", callback=checked(V.SEED), help="seed of the window permutation")]
SeqLen = Annotated[int, typer.Option("--seq-len", callback=checked(V.SEQ_LEN), help="tokens per window")]
Samples = Annotated[int, typer.Option("--samples", callback=checked(V.SAMPLES), help="calibration samples")]
EvalSamples = Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES), help="held-out samples")]
MaxBatch = Annotated[int | None, typer.Option("--max-batch-size", callback=checked(V.BATCH),
                                              help="cap for --batch-size auto")]
Aggregation = Annotated[str, typer.Option("--aggregation", callback=_aggregation,
                                          help="batch_seq aggregation, e.g. l2_mean")]
DepthMetric = Annotated[str, typer.Option("--depth-metric", callback=_choice("bi", "drop-loss"),
                                          help="bi (block importance) or drop-loss")]
Compile = Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile (default: on for CUDA)")]
Force = Annotated[bool, typer.Option("--force", help="write into a directory minitron-lab did not make "
                                     "(only the files this command makes are replaced)")]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="run model code shipped with a checkpoint")]
AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="accept .bin (pickle) weights")]
Download = Annotated[bool, typer.Option("--download", help="allow Hugging Face hub downloads")]


def _load(model: str, dtype: str = "auto", device: str = "auto", random_init: bool = False,
          trust_remote_code: bool = False, allow_pickle: bool = False, download: bool = False,
          device_map: str | None = None, seed: int = 0):
    from analysis.models.loading import LoadConfig

    return LoadConfig(model=model, dtype=dtype, device=device, random_init=random_init,
                      trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, allow_download=download,
                      device_map=device_map, seed=seed)


def _wide() -> Console:
    """stdout console; tables keep their columns when piped."""
    return Console(width=None if sys.stdout.isatty() else 180)


def _write_card(stage: Path, final: Path) -> None:
    """``finalize`` hook of model exports: the card, written into the staged model directory."""
    from cards import write_card_for_directory

    write_card_for_directory(stage, final=final)


@app.callback()
def main_options(debug: Annotated[bool, typer.Option("--debug", help="show the traceback of any error")] = False):
    """Minitron Lab: where a model's capacity lives, Minitron-style compression, honest cards."""
    if debug:
        DEBUG["on"] = True


# --- commands -----------------------------------------------------------------------------------------
@app.command()
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


@app.command()
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
    pre_activation: Annotated[bool, typer.Option("--pre-activation", help="neuron importance before the activation")] = False,
    dtype: Dtype = "auto",
    device: Device = "auto",
    device_map: Annotated[str | None, typer.Option("--device-map", callback=_choice("auto"),
                                                   help="auto: spread a model too big for one GPU")] = None,
    compile: Compile = None,
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
        data=DataConfig(source=data, seq_len=seq_len, calib_samples=samples, eval_samples=eval_samples, seed=seed),
        batch_size=batch_size, max_batch_size=max_batch_size,
        block_sizes=V.parse_int_list("--block-sizes", block_sizes, V.BLOCK_SIZE) if block_sizes is not None else None,
        pre_activation=pre_activation,
        compile=compile,
    )
    result_dir = run_analysis(cfg, out=out, force=force, resume=resume, console=console)
    if world_from_env()[0] != 0:  # under torchrun only rank 0 writes and reports
        return
    if figures:
        _draw_run(result_dir, force)
    say(f"results: {result_dir}")


@app.command()
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
    compile: Compile = None,
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


def _draw_run(run_dir, force: bool = False) -> None:
    from figures.render import draw_run, run_figures_current

    if not force and run_figures_current(run_dir):  # a cached run keeps the figures drawn from the same numbers
        say(f"figures: up to date in {Path(run_dir) / 'figures'}")
        return
    written = draw_run(run_dir, force=force)
    say(f"figures: {len(written)} files in {Path(run_dir) / 'figures'}")


@app.command()
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


@app.command()
def card(
    model: Annotated[str | None, typer.Option("--model", "-m", help="registry name/alias (8B, 4B, 15B), model or run directory")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="cards for Nemotron-4 15B, Minitron-8B and Minitron-4B")] = False,
    out: Annotated[str | None, typer.Option("--out", help="output directory (default cards/out/<model>/)")] = None,
    template: Annotated[str | None, typer.Option("--template", help="your own jinja2 template (sandboxed, time- and size-limited)")] = None,
    fmt: Annotated[str, typer.Option("--format", callback=_choice("md", "html"),
                                     help="md (README.md + figures) or html (one self-contained file)")] = "md",
    check: Annotated[str | None, typer.Option("--check", help="check a card's architecture claims instead")] = None,
    runs: Annotated[str, typer.Option("--runs", help="where analysis runs live (runs/<model>/<run-id>/)")] = "runs",
    force: Force = False,
):
    """Write a model card (front matter, architecture from config, published numbers, analysis), or check one."""
    if check:
        _check_card(check, model)
        return
    from cards.publish import FAMILY, write_cards

    if bool(model) == all_models:
        raise MinitronError("pass exactly one of --model M or --all (or --check PATH)")
    for path in write_cards(list(FAMILY) if all_models else [model], out, template, fmt, runs, force=force):
        print(path)


def _check_card(path: str, model: str | None) -> None:
    from cards.check import check_card

    claims, bad = check_card(path, model)
    if not claims:
        raise MinitronError(f"{path}: no architecture claims found (pass --model if the card names no model)")
    for d in bad:
        print(f"{path}:{d}")
    say(f"{len(claims)} architecture claims checked, {len(bad)} disagree")
    if bad:
        raise typer.Exit(1)


@app.command()
def distill(
    student: Annotated[str, typer.Option("--student", "-s", help="the model to train, usually a pruned directory")],
    teacher: Annotated[str, typer.Option("--teacher", "-t", help=MODEL_HELP)] = "smollm2-135m",
    data: Data = "pydoc",
    steps: Annotated[int, typer.Option("--steps", callback=checked(V.STEPS), help="optimizer steps")] = 100,
    seq_len: SeqLen = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH), help="windows per micro-batch")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", callback=checked(V.ACCUM),
                                            help="micro-batches per optimizer step")] = 1,
    lr: Annotated[float, typer.Option("--lr", callback=checked(V.LR), help="peak learning rate")] = 1e-4,
    min_lr: Annotated[float, typer.Option("--min-lr", callback=checked(V.MIN_LR), help="end of the cosine decay")] = 1e-5,
    warmup: Annotated[int, typer.Option("--warmup", callback=checked(V.WARMUP), help="linear warmup steps")] = 10,
    kd_weight: Annotated[float, typer.Option("--kd-weight", callback=checked(V.LOSS_WEIGHT),
                                             help="weight of KL(teacher || student)")] = 1.0,
    clm_weight: Annotated[float, typer.Option("--clm-weight", callback=checked(V.LOSS_WEIGHT),
                                              help="weight of next-token cross-entropy")] = 0.0,
    finetune: Annotated[bool, typer.Option("--finetune", help="plain CLM fine-tuning (kd 0, clm 1)")] = False,
    eval_every: Annotated[int, typer.Option("--eval-every", callback=checked(V.EVERY),
                                            help="held-out evaluation every N steps (0: ends)")] = 20,
    eval_samples: Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES), help="held-out windows")] = 8,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", callback=checked(V.EVERY),
                                                  help="checkpoint every N steps (and at least every ~30 s)")] = 50,
    seed: Annotated[int, typer.Option("--seed", callback=checked(V.SEED), help="order of training windows")] = 0,
    data_seed: Annotated[int, typer.Option("--data-seed", callback=checked(V.SEED),
                                           help="window permutation, as analyze --seed")] = 0,
    dtype: Annotated[str, typer.Option("--dtype", callback=_choice(*DTYPES),
                                       help="compute dtype (the student stays float32)")] = "auto",
    device: Device = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out")] = False,
    out: Annotated[str | None, typer.Option("--out", help="output directory (default runs/distill/<student>-<mode>)")] = None,
    force: Force = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Download = False,
):
    """Heal a pruned student by logit distillation from its teacher (or plain fine-tuning, --finetune)."""
    from analysis.data import DataConfig
    from analysis.training.loop import DistillConfig
    from analysis.training.pipeline import DistillJob, run_distill

    train = DistillConfig(steps=steps, seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                          min_lr=min_lr, warmup_steps=warmup, kd_weight=kd_weight, clm_weight=clm_weight,
                          eval_every=eval_every, eval_samples=eval_samples, checkpoint_every=checkpoint_every,
                          seed=seed, device=device, dtype=dtype)
    job = DistillJob(student=_load(student, "float32", device, False, trust_remote_code, allow_pickle, download),
                     teacher=_load(teacher, dtype, device, False, trust_remote_code, allow_pickle, download),
                     data=DataConfig(source=data, seed=data_seed), train=train.finetune() if finetune else train,
                     out=Path(out) if out else None, resume=resume, force=force)
    result = run_distill(job, console=console, finalize=_write_card)
    before, after = result.final["before"], result.final["after"]
    say(f"held-out loss {before['loss']:.4f} -> {after['loss']:.4f} (ppl {before['ppl']:.2f} -> "
        f"{after['ppl']:.2f}), KL {before['kl']:.4f} -> {after['kl']:.4f}; teacher loss {after['teacher_loss']:.4f}")
    say(f"model: {result.model_dir}")


@app.command()
def prune(
    out: Annotated[str, typer.Option("--out", help="output model directory")],
    model: Model = "smollm2-135m",
    run: Annotated[str | None, typer.Option("--run", help="analysis run directory (default: analyse on the fly)")] = None,
    target: Annotated[str | None, typer.Option("--target", help="take the shape of a registry model (8B, 4B)")] = None,
    hidden: Annotated[int | None, typer.Option("--hidden", callback=checked(V.WIDTH),
                                               help="embedding channels to keep")] = None,
    ffn: Annotated[int | None, typer.Option("--ffn", callback=checked(V.WIDTH), help="MLP neurons to keep per layer")] = None,
    heads: Annotated[int | None, typer.Option("--heads", callback=checked(V.WIDTH),
                                              help="query heads to keep per layer (multiple of kv heads)")] = None,
    layers: Annotated[int | None, typer.Option("--layers", callback=checked(V.WIDTH), help="decoder layers to keep")] = None,
    depth_metric: DepthMetric = "bi",
    aggregation: Aggregation = "l2_mean",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="write config.json only and print the parameter count")] = False,
    data: Annotated[str, typer.Option("--data", help="text for on-the-fly analysis and perplexity")] = "pydoc",
    samples: Annotated[int, typer.Option("--samples", callback=checked(V.SAMPLES),
                                         help="calibration samples (on-the-fly analysis)")] = 32,
    eval_samples: Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                              help="held-out samples for perplexity")] = 8,
    seq_len: SeqLen = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH), help="samples per forward")] = 8,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="zero-shot perplexity before and after")] = True,
    dtype: Dtype = "auto",
    device: Device = "auto",
    random_init: Annotated[bool, typer.Option("--random-init", help="random teacher weights (shape/speed work)")] = False,
    seed: Seed = 0,
    force: Force = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Download = False,
):
    """Minitron-style structured pruning into a plain Hugging Face model directory."""
    from analysis.core.io import check_output
    from analysis.data import DataConfig
    from analysis.pruning.export import export_config, export_model
    from analysis.pruning.pipeline import PruneConfig
    from analysis.pruning.pipeline import dry_run as shapes_only
    from analysis.pruning.pipeline import prune as run_prune
    from analysis.pruning.plan import PruneTarget

    sizes = PruneTarget(hidden=hidden, ffn=ffn, heads=heads, layers=layers)
    if target is None and sizes == PruneTarget():
        raise MinitronError("nothing to prune: pass --target 8B|4B or at least one of --hidden, --ffn, --heads, --layers")
    check_output(out, force)  # before any work
    cfg = PruneConfig(
        load=_load(model, dtype, device, random_init, trust_remote_code, allow_pickle, download, seed=seed),
        target=sizes, target_name=target, run=run, depth_metric=depth_metric, aggregation=aggregation,
        evaluate=evaluate, batch_size=batch_size,
        data=DataConfig(source=data, seq_len=seq_len, calib_samples=samples, eval_samples=eval_samples, seed=seed),
    )
    if dry_run:
        config, recipe = shapes_only(cfg)
        export_config(config, out, recipe, force=force)
    else:
        pruned, tokenizer, recipe = run_prune(cfg, console=console)
        export_model(pruned, tokenizer, out, recipe, force=force, finalize=_write_card)
    t = recipe["target"]
    say(f"{recipe['teacher']} ({recipe['teacher_params'] / 1e9:.3f}B) -> hidden {t['hidden']}, "
        f"ffn {t['ffn']}, heads {t['heads']}, layers {t['layers']}")
    print(f"params: {recipe['params']} ({recipe['params'] / 1e9:.3f}B)")
    if recipe["ppl_before"] is not None:
        print(f"perplexity: {recipe['ppl_before']:.3f} -> {recipe['ppl_after']:.3f}")
    say(f"written: {out}")


@app.command()
def search(
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "15B",
    params: Annotated[str, typer.Option("--params", help="parameter budget: 8B, 4B or a number (7.5e9)")] = "8B",
    tolerance: Annotated[float, typer.Option("--tolerance", callback=checked(V.TOLERANCE),
                                             help="relative distance to the budget")] = 0.05,
    rank_: Annotated[bool, typer.Option("--rank", help="rank by zero-shot loss after pruning (needs weights)")] = False,
    run: Annotated[str | None, typer.Option("--run", help="analysis run for --rank")] = None,
    aggregation: Aggregation = "l2_mean",
    depth_metric: DepthMetric = "bi",
    eval_samples: EvalSamples = 8,
    seq_len: SeqLen = 256,
    dtype: Dtype = "auto",
    device: Device = "auto",
):
    """Candidate architectures of the paper's search space within a parameter budget."""
    import dataclasses

    from analysis.data import DataConfig
    from analysis.models.configs import from_hf_config
    from analysis.models.loading import load_model
    from analysis.pruning.search import (
        check_budget,
        enumerate_candidates,
        no_candidates,
        parse_budget,
        rank_candidates,
        space_for,
    )

    budget = parse_budget(params)
    if rank_ and run is None:
        raise MinitronError("--rank needs --run DIR (an analysis run of the teacher)")
    load = _load(model, dtype, "meta", True)
    teacher = from_hf_config(load_model(load).model.config)
    check_budget(teacher, budget)
    space = space_for(budget)
    candidates = enumerate_candidates(teacher, budget, space, tolerance)
    if not candidates:
        raise MinitronError(no_candidates(teacher, budget, space, tolerance), exit_code=1)
    losses = None
    if rank_:
        losses = rank_candidates(dataclasses.replace(load, device=device, random_init=False), candidates, run,
                                 aggregation, depth_metric, DataConfig(seq_len=seq_len, eval_samples=eval_samples))
    _print_candidates(candidates, budget, losses)


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
    _wide().print(table)
    print(f"{len(candidates)} candidates")


# --- running a command: one line per failure, never a traceback (unless --debug) ----------------------
def _click_exceptions():
    """(ClickException, Abort, Exit) of the click that typer runs on (recent typer vendors its own copy
    and keeps Abort and Exit in ``typer.exceptions``)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return (exceptions.ClickException, getattr(exceptions, "Abort", typer.Abort),
            getattr(exceptions, "Exit", typer.Exit))


INTERRUPTED = 130  # typer turns Ctrl-C into exit code 130 without a word; older click into Abort


@contextmanager
def _warnings_as_lines():
    """Our warnings as one ``warning: ...`` line each on stderr (a corrupt run skipped, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", MinitronWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, MinitronWarning):
                say(f"warning: {message}")
            else:
                previous(message, category, filename, lineno, file, line)
        warnings.showwarning = show
        yield


def _fail(message: str, code: int) -> int:
    if DEBUG["on"]:
        traceback.print_exc()
    say(f"error: {message}")
    return code


def run(argv: list[str] | None = None) -> int:
    """Run one command; every failure becomes one line on stderr and a non-zero exit code (returned)."""
    click_error, abort, exit_ = _click_exceptions()
    DEBUG["on"] = bool(os.environ.get("MINITRON_DEBUG"))
    interrupted = ("interrupted; nothing half-written was left behind (analyze and distill continue from their "
                   "last checkpoint, if they wrote one, with --resume)")
    with _warnings_as_lines():
        try:
            code = app(args=argv, standalone_mode=False)  # without standalone mode, typer.Exit(n) comes back as n
            if code == INTERRUPTED:
                return _fail(interrupted, INTERRUPTED)
            return code if isinstance(code, int) else 0
        except MinitronError as exc:  # Interrupted (a run that saved its checkpoint) is one: exit 130
            return _fail(str(exc), exc.exit_code)
        except (KeyboardInterrupt, abort):
            return _fail(interrupted, INTERRUPTED)
        except click_error as exc:  # usage errors: bad option, missing option, no such command
            return _fail(one_line(exc.format_message()), exc.exit_code)
        except exit_ as exc:
            return exc.exit_code
        except MemoryError:
            return _fail("out of memory; use a smaller model, fewer or shorter samples, or a smaller batch", 1)
        except OSError as exc:  # disk full, permission denied, vanished file: the file and the reason
            where = f"{exc.filename}: " if exc.filename else ""
            return _fail(f"{where}{exc.strerror or one_line(exc)}", 1)
        except Exception as exc:  # noqa: BLE001 - a bug of ours: still one line, with the way to see more
            return _fail(f"unexpected {type(exc).__name__}: {one_line(exc)} (a bug in minitron-lab; rerun with "
                         "--debug for the traceback and report it)", 1)


def main() -> None:
    """Entry point (``python cli.py`` and the ``minitron-lab`` script)."""
    sys.exit(run())


if __name__ == "__main__":
    main()
