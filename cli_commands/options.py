"""What every command shares: the typer app, one-line output, option rules and shared options.

Every numeric option has a range (``analysis/core/validate.py``), checked while parsing; the command
modules (``measure``, ``compress``, ``publish``) register on ``app``; ``cli.py`` runs it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from analysis.core import validate as V

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Minitron Lab: where a model's capacity lives, Minitron-style compression, honest cards.")
console = Console(stderr=True)
DEBUG = {"on": bool(os.environ.get("MINITRON_DEBUG"))}  # --debug: tracebacks for every error


def say(message: str) -> None:
    """One line on stderr, printed as written (rich markup would eat '[data]' in an install hint)."""
    console.print(escape(str(message)), highlight=False, soft_wrap=True)


# --- option rules -------------------------------------------------------------------------------------
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
