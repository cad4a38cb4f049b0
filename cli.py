"""Minitron Lab command line: wires the library together, holds no logic of its own.

    python cli.py models [--json]
    python cli.py analyze [--model NAME] [--data SRC] ...
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
