"""Analysis results on disk: ``importance.safetensors`` + ``metrics.json`` in a run directory.

Tensor names (float32):
  heads [L, H], neurons [L, F], channels [D]          default aggregation (batch=L2, seq=mean)
  heads.<b>_<s>, neurons.<b>_<s>, channels.<b>_<s>    every aggregation, b and s in {mean, l2, var}
  channels.per_norm [2L, D]                           per pre-norm scores (attn, mlp per layer)
  block_importance [L]                                1 - mean cos(x_l, x_{l+1})
  angular.n<k> [L-k+1]                                mean arccos(cos(x_l, x_{l+k}))/pi
  drop_layer_loss [L]                                 eval LM loss with layer l removed
  drop_block_loss.n<k> [L-k+1]                        eval LM loss with layers l..l+k-1 removed
``metrics.json`` holds perplexity, losses, per-layer tables, config and provenance.
Writes are atomic: a temporary directory renamed into place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from analysis.core.errors import MinitronError, one_line, warn
from analysis.core.io import output_dir, read_json, write_json

TENSORS = "importance.safetensors"
METRICS = "metrics.json"
AGGREGATIONS = ("mean", "l2", "var")
AGGREGATION_NAMES = tuple(f"{b}_{s}" for b in AGGREGATIONS for s in AGGREGATIONS)  # batch_seq
DEFAULT_AGGREGATION = "l2_mean"  # batch=L2, seq=mean, as in the paper
REQUIRED = ("heads", "neurons", "channels", "block_importance")  # tensors every run holds


@dataclass
class RunResult:
    path: Path
    tensors: dict[str, torch.Tensor]
    metrics: dict

    @property
    def model_name(self) -> str:
        return self.metrics["model"]["name"]

    def importance(self, axis: str, aggregation: str = DEFAULT_AGGREGATION) -> torch.Tensor:
        """axis in {heads, neurons, channels}; aggregation like 'l2_mean' (batch_seq)."""
        key = axis if aggregation == DEFAULT_AGGREGATION else f"{axis}.{aggregation}"
        if key not in self.tensors:
            key = f"{axis}.{aggregation}"
        return self.tensors[key]


def write_run(path: Path, tensors: dict[str, torch.Tensor], metrics: dict) -> Path:
    """Write a run directory atomically under the output contract (``analysis.core.io.output_dir``)."""
    from safetensors.torch import save_file

    path = Path(path)
    with output_dir(path, "analyze") as tmp:
        save_file({k: v.detach().float().cpu().clone() for k, v in tensors.items()}, str(tmp / TENSORS))
        write_json(tmp / METRICS, metrics, default=_jsonable)
    return path


def _jsonable(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def load_run(path: str | Path) -> RunResult:
    """Read a run directory written by ``write_run``; a damaged file is named in a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir():
        raise MinitronError(f"{path}: no such run directory")
    if not (path / TENSORS).exists() or not (path / METRICS).exists():
        raise MinitronError(f"{path}: not an analysis run (needs {TENSORS} and {METRICS})")
    metrics = read_json(path / METRICS, "run metrics file")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("model"), dict):
        raise MinitronError(f"{path / METRICS}: corrupt run metrics file: no 'model' section")
    try:
        tensors = load_file(str(path / TENSORS))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise MinitronError(f"{path / TENSORS}: corrupt importance file ({one_line(exc)})") from None
    missing = [k for k in REQUIRED if k not in tensors]
    if missing:
        raise MinitronError(f"{path / TENSORS}: corrupt importance file: no {', '.join(missing)}")
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(t.isfinite().all()):
            raise MinitronError(f"{path / TENSORS}: corrupt importance file: '{name}' holds NaN or infinity")
    return RunResult(path=path, tensors=tensors, metrics=metrics)


def latest_run(model_name: str, root: str | Path = "runs") -> RunResult | None:
    """The most recently written readable run of a model under ``root/<model_name>/``, or None.

    A damaged run is skipped with a warning (naming it), so one bad directory never hides the others.
    """
    base = Path(root) / model_name
    runs = [p for p in base.glob("*") if (p / METRICS).exists() and not p.name.startswith(".")] if base.exists() else []
    for run in sorted(runs, key=lambda p: (p / METRICS).stat().st_mtime, reverse=True):
        try:
            return load_run(run)
        except MinitronError as exc:
            warn(f"skipping a damaged analysis run: {exc}")
    return None
