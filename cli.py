"""Minitron Lab command line: wires the library together, holds no logic of its own.

    python cli.py models [--json]
    python cli.py analyze [--model NAME] [--data SRC] ...
    python cli.py bench [--model NAME] [--random-init] [--seq-len T] [--batch-size auto|N] [--json]
    torchrun --nproc-per-node N cli.py analyze ...
    python cli.py perplexity [--model NAME] [--data SRC] [--protocol hf-stride|lm-eval] [--seq-len T]
    python cli.py figures [--run DIR] [--out DIR]
    python cli.py card (--model M | --all) [--out DIR] [--template T] [--format md|html]
    python cli.py card --check PATH [--model M]
    python cli.py distill --student DIR [--teacher NAME] [--steps N] [--finetune] ...
    python cli.py prune --model TEACHER [--target 8B | --hidden H --ffn F --heads N --layers L] --out DIR
    python cli.py search --model 15B --params 8B [--rank --run DIR --retrain-steps N] [--out DIR]
    python cli.py perplexity [--model M] [--data SRC] [--protocol hf-stride|lm-eval]
    python cli.py experiment NAME [--seeds N] [--small] [--estimate]
    python cli.py experiment --report [--check]
    python cli.py evaluate --model M --tasks T1,T2 [--num-fewshot K | --paper-settings] [--limit N]
    python cli.py compare --teacher T --student S [--baseline B] [--data SRC]
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


def _protocols(param: typer.CallbackParam, value: list[str] | None) -> list[str] | None:
    from analysis.evaluation.perplexity import PROTOCOLS

    return [V.check_choice(param.opts[0], v, PROTOCOLS) for v in value] if value else value


# --- options shared by several commands -------------------------------------------------------------
MODEL_HELP = "registry name or alias (8B, 4B, 15B, smollm2-135m), Hugging Face id, local directory or .gguf"
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
DEPTH_METRICS = ("bi", "drop-loss", "block")  # analysis.pruning.plan.DEPTH_METRICS (cli imports no torch)
COMPILE_MODES = ("auto", "off", "regional", "full")  # analysis.core.perf.COMPILE_MODES
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
DepthMetric = Annotated[str, typer.Option("--depth-metric", callback=_choice(*DEPTH_METRICS),
                                          help="bi (block importance), drop-loss (per layer) or block (cheapest "
                                          "contiguous block)")]
Compile = Annotated[str, typer.Option(
    "--compile", callback=_choice(*COMPILE_MODES),
    help="auto (regional on CUDA, off on CPU), off, regional (one compiled decoder layer), full")]
HeadMerge = Annotated[bool, typer.Option("--head-merge/--no-head-merge",
                                         help="fold pruned query heads into kept ones (the paper's §2.3)")]
Force = Annotated[bool, typer.Option("--force", help="write into a directory minitron-lab did not make "
                                     "(only the files this command makes are replaced)")]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="run model code shipped with a checkpoint")]
AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="accept .bin (pickle) weights")]
Download = Annotated[bool, typer.Option("--download", help="allow Hugging Face hub downloads (models and --data datasets)")]


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


@app.command()
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
    eval_samples: Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                              help="held-out windows (the evaluation split, never trained on)")] = 8,
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
                     data=DataConfig(source=data, seed=data_seed, download=download), train=train.finetune() if finetune else train,
                     out=Path(out) if out else None, resume=resume, force=force)
    result = run_distill(job, console=console, finalize=_write_card)
    before, after = result.final["before"], result.final["after"]
    say(f"held-out loss {before['loss']:.4f} -> {after['loss']:.4f} (ppl {before['ppl']:.2f} -> "
        f"{after['ppl']:.2f}), KL {before['kl']:.4f} -> {after['kl']:.4f}; teacher loss {after['teacher_loss']:.4f}")
    say(f"model: {result.model_dir}")


@app.command()
def evaluate(
    model: Model = "smollm2-135m",
    tasks: Annotated[str, typer.Option("--tasks", help="comma-separated: lm-eval tasks, benchmark keys (mmlu, arc_c, "
                                       "...), our minitron_facts / minitron_cloze, or task YAML paths")] = "minitron_facts",
    num_fewshot: Annotated[int | None, typer.Option("--num-fewshot", callback=checked(V.SHOTS), help="shots for every task (default: each task's)")] = None,
    paper_settings: Annotated[bool, typer.Option("--paper-settings", help="the shots and metric of the paper's Tables 2/3")] = False,
    limit: Annotated[int | None, typer.Option("--limit", callback=checked(V.LIMIT),
                                               help="at most N documents per task")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH), help="requests per forward")] = 8,
    include: Annotated[list[str] | None, typer.Option("--include", help="a folder of lm-eval task YAMLs (repeatable)")] = None,
    allow_code_execution: Annotated[bool, typer.Option("--allow-code-execution", help="run model-written code (MBPP, HumanEval)")] = False,
    dtype: Dtype = "auto",
    device: Device = "auto",
    out: Annotated[str | None, typer.Option("--out", help="output directory (default runs/<model>/eval-<id>)")] = None,
    force: Force = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Annotated[bool, typer.Option("--download", help="allow model and dataset downloads")] = False,
):
    """Downstream accuracy through lm-evaluation-harness, on the model as this toolkit loads it."""
    from analysis.evaluation.harness import EvalConfig
    from analysis.evaluation.harness import evaluate as run_evaluate

    cfg = EvalConfig(load=_load(model, dtype, device, False, trust_remote_code, allow_pickle, download),
                     tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), num_fewshot=num_fewshot,
                     paper_settings=paper_settings, limit=limit, batch_size=batch_size, include=tuple(include or ()),
                     allow_code_execution=allow_code_execution)
    run_dir = run_evaluate(cfg, out=out, force=force, console=_wide())
    say(f"results: {run_dir}")


@app.command()
def compare(
    student: Annotated[str, typer.Option("--student", "-s", help="the compressed model: a pruned or distilled directory")],
    teacher: Annotated[str | None, typer.Option("--teacher", "-t", help=MODEL_HELP + " (default: the student's "
                                                "prune_recipe.json teacher)")] = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help="a second student (default: the pruned model a "
                                                 "distilled student started from)")] = None,
    data: Annotated[str | None, typer.Option("--data", help="text source (default: the student's held-out windows)")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", callback=checked(V.SEQ_LEN), help="tokens per window")] = None,
    eval_samples: Annotated[int | None, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                                     help="held-out windows")] = None,
    seed: Annotated[int | None, typer.Option("--seed", callback=checked(V.SEED), help="window permutation seed")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH), help="windows per forward")] = 4,
    cka_tokens: Annotated[int, typer.Option("--cka-tokens", callback=checked(V.CKA_TOKENS),
                                            help="tokens for linear CKA")] = 1024,
    worst: Annotated[int, typer.Option("--worst", callback=checked(V.WORST), help="tokens listed by loss increase")] = 20,
    dtype: Dtype = "auto",
    device: Device = "auto",
    out: Annotated[str | None, typer.Option("--out", help="output directory (default runs/compare/<student>-vs-<teacher>)")] = None,
    force: Force = False,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="draw figures at the end")] = True,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Download = False,
):
    """Teacher vs student on the same held-out windows: KL, top-1 agreement, loss increase, layer CKA."""
    from analysis.evaluation.compare import CompareConfig, run_compare, student_records

    teacher = teacher or student_records(student)["teacher"]
    if not teacher:
        raise MinitronError(f"{student} names no teacher (no prune_recipe.json); pass --teacher")
    given = {k: v for k, v in (("source", data), ("seq_len", seq_len), ("eval_samples", eval_samples),
                                ("seed", seed)) if v is not None}
    cfg = CompareConfig(
        teacher=_load(teacher, dtype, device, False, trust_remote_code, allow_pickle, download),
        student=_load(student, dtype, device, False, trust_remote_code, allow_pickle, download),
        baseline=_load(baseline, dtype, device, False, trust_remote_code, allow_pickle, download) if baseline else None,
        windows=given, batch_size=batch_size, cka_tokens=cka_tokens, worst=worst)
    run_dir = run_compare(cfg, out=out, force=force, console=_wide())
    if figures:
        from figures.render import draw_compare

        written = draw_compare(run_dir, force=force)
        say(f"figures: {len(written)} files in {Path(run_dir) / 'figures'}")
    say(f"results: {run_dir}")


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
    head_merge: HeadMerge = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="write config.json only and print the parameter count")] = False,
    data: Annotated[str, typer.Option("--data", help="text for on-the-fly analysis and perplexity")] = "pydoc",
    samples: Annotated[int, typer.Option("--samples", callback=checked(V.SAMPLES),
                                         help="calibration samples (on-the-fly analysis)")] = 32,
    select_samples: Annotated[int, typer.Option("--select-samples", callback=checked(V.SAMPLES),
                                                help="selection samples: drop-layer losses of the on-the-fly "
                                                "analysis")] = 8,
    eval_samples: Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                              help="evaluation samples for perplexity (disjoint from the "
                                              "analysis's)")] = 8,
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
        evaluate=evaluate, batch_size=batch_size, head_merge=head_merge,
        data=DataConfig(source=data, seq_len=seq_len, calib_samples=samples, eval_samples=select_samples,
                        test_samples=eval_samples, seed=seed, download=download),
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
    params: Annotated[str, typer.Option(
        "--params", help="8B or 4B (the paper's problems, scaled to the teacher) or a parameter count (7.5e9)")] = "8B",
    tolerance: Annotated[float | None, typer.Option(
        "--tolerance", callback=checked(V.TOLERANCE),
        help="keep |params - budget| <= t x budget (default: 8B the paper's own list, else 0.05)")] = None,
    rank_: Annotated[bool, typer.Option("--rank", help="prune, retrain and rank every candidate (needs weights, --run)")] = False,
    run: Annotated[str | None, typer.Option("--run", help="analysis run of the teacher, for --rank")] = None,
    retrain_steps: Annotated[int, typer.Option(
        "--retrain-steps", callback=checked(V.TRAIN_STEPS),
        help="distillation steps per candidate before ranking (paper: ~400); 0: zero-shot order")] = 20,
    aggregation: Aggregation = "l2_mean",
    depth_metric: DepthMetric = "bi",
    head_merge: HeadMerge = True,
    data: Data = "pydoc",
    eval_samples: Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                              help="held-out windows the ranking scores")] = 8,
    seq_len: SeqLen = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH),
                                            help="windows per training step and evaluation batch")] = 2,
    lr: Annotated[float, typer.Option("--lr", callback=checked(V.LR),
                                      help="peak learning rate of the retraining (cosine to lr/10)")] = 1e-4,
    seed: Seed = 0,
    out: Annotated[str | None, typer.Option("--out", help="write search.json (candidates, ranking, provenance) here")] = None,
    force: Force = False,
    dtype: Dtype = "auto",
    device: Device = "auto",
):
    """Candidate architectures of the paper's search space within a parameter budget, optionally ranked."""
    from analysis.core.io import check_output, output_dir, write_json
    from analysis.data import DataConfig
    from analysis.training.loop import DistillConfig
    from analysis.training.search import SearchJob, run_search

    if out:
        check_output(out, force)  # before any work
    train = DistillConfig(steps=retrain_steps, seq_len=seq_len, batch_size=batch_size, lr=lr, min_lr=lr / 10,
                          warmup_steps=max(1, retrain_steps // 10), eval_every=0, eval_samples=eval_samples,
                          checkpoint_every=0, device=device, dtype=dtype)
    job = SearchJob(load=_load(model, dtype, device), params=params, tolerance=tolerance, rank=rank_, run=run,
                    aggregation=aggregation, depth_metric=depth_metric, head_merge=head_merge, train=train,
                    data=DataConfig(source=data, seed=seed))
    doc = run_search(job, log=say)
    _print_candidates(doc)
    if out:
        with output_dir(out, "search") as tmp:
            write_json(tmp / "search.json", doc)
        say(f"written: {Path(out) / 'search.json'}")


def _print_candidates(doc: dict) -> None:
    space, ranking = doc["space"], doc["ranking"]
    rows = doc["candidates"]
    budget = space["budget"]
    low, high = space["window"]
    table = Table(title=f"{doc['teacher']}, {doc['params']}: budget {_count(budget)}, params in "
                        f"{_count(low)}..{_count(high)}\n{space['rule']}")
    cols = ["#", "layers", "heads", "MLP factor", "hidden", "MLP", "params", "vs budget"]
    order = list(range(len(rows)))
    if ranking:
        key = ranking["order_by"]
        order.sort(key=lambda i: (ranking["rows"][i][key] is None, ranking["rows"][i][key] or 0.0))  # diverged last
        cols += ["zero-shot loss"] + (["retrained loss", "zero-shot rank"] if ranking["retrain"] else [])
        zs = {i: ranking["rows"][i]["zero_shot_loss"] for i in order}
        zs_rank = {i: r for r, i in enumerate(sorted(order, key=lambda i: (zs[i] is None, zs[i] or 0.0)), 1)}
    for col in cols:
        table.add_column(col, justify="right")
    for n, i in enumerate(order, 1):
        c = rows[i]
        cells = [str(n), str(c["layers"]), str(c["heads"]), f"{c['mlp_factor']:g}", str(c["hidden"]), str(c["mlp"]),
                 _count(c["params"]), f"{c['vs_budget']:+.1%}"]
        if ranking:
            r = ranking["rows"][i]
            cells.append(_loss(r["zero_shot_loss"]))
            if ranking["retrain"]:
                cells += [_loss(r["retrained_loss"]), str(zs_rank[i])]
        table.add_row(*cells)
    _wide().print(table)
    a = (ranking or {}).get("agreement")
    if a and None not in (a["spearman"], a["kendall"], *a["spearman_ci95"], *a["kendall_ci95"]):  # tied: undefined
        print(f"zero-shot vs retrained order: Spearman {a['spearman']:+.2f} [{a['spearman_ci95'][0]:+.2f}, "
              f"{a['spearman_ci95'][1]:+.2f}], Kendall {a['kendall']:+.2f} [{a['kendall_ci95'][0]:+.2f}, "
              f"{a['kendall_ci95'][1]:+.2f}] (95% bootstrap over candidates); the retrained best ranked "
              f"{a['retrained_best_zero_shot_rank']} zero-shot")
    print(f"{len(rows)} candidates")


def _loss(value: float | None) -> str:
    return "diverged" if value is None else f"{value:.4f}"


def _count(n: float) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


@app.command()
def experiment(
    name: Annotated[str | None, typer.Argument(
        help="all, layer-drop, aggregation, pruning-axes, head-merge or distill-vs-finetune")] = None,
    seeds: Annotated[int | None, typer.Option("--seeds", callback=checked(V.SEEDS),
                                              help="window draws (and training orders); default 3")] = None,
    small: Annotated[bool, typer.Option("--small", help="CI scale: a ~5M-parameter cut of the default, seconds")] = False,
    estimate: Annotated[bool, typer.Option("--estimate", help="print the plan and its time estimate, run nothing")] = False,
    report: Annotated[bool, typer.Option("--report", help="regenerate the README's results section from --out")] = False,
    check: Annotated[bool, typer.Option("--check", help="with --report: exit 1 if the README is out of date")] = False,
    out: Annotated[str, typer.Option("--out", help="results directory (one JSON per experiment)")] = "notebooks/results",
    runs: Annotated[str, typer.Option("--runs", help="analysis runs, reused between calls")] = "notebooks/out/runs",
    readme: Annotated[str, typer.Option("--readme", help="the README whose results section --report writes")] = "README.md",
    force: Force = False,
):
    """Rerun the paper's experiments over seeds (results as JSON), or regenerate the README's results from them."""
    if report:
        from analysis.experiments.report import update_readme

        changed = update_readme(readme, out, check=check)
        if check and changed:
            say(f"{readme} is out of date with {out}: run python cli.py experiment --report")
            raise typer.Exit(1)
        say(f"{readme}: results section {'rewritten' if changed else 'already up to date'}")
        return
    from analysis.experiments.runner import EXPERIMENTS, resolve_names, run_experiments

    if name is None:
        raise MinitronError(f"name an experiment (all, {', '.join(EXPERIMENTS)}) or pass --report")
    from analysis.experiments.setup import scale

    sc = scale(small)
    names = resolve_names(name)
    for path in run_experiments(names, sc, sc.seeds if seeds is None else seeds, runs=runs, out=out, force=force,
                                console=console, estimate_only=estimate):
        print(path)
    if not estimate:
        say("README: python cli.py experiment --report")


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
        except SystemExit as exc:  # typer's answer to a closed stdout (``... | head``): quiet, exit 1
            return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
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
