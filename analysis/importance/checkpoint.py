"""Where an analyze run stands, and its resumable checkpoint on disk (JSON + safetensors, never a pickle)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from analysis.core import distributed as dd
from analysis.core.io import atomic_dir, write_json
from analysis.importance.collect import Collector

CHECKPOINT_EVERY_S = 30.0


@dataclass
class Progress:
    """Where a run stands: what its checkpoint stores, and the sums its metrics are built from."""

    key: str  # run key this progress belongs to
    batch_size: int  # samples per batch the splits were cut into (kept on resume)
    calib_done: int = 0  # calibration batches folded into the statistics
    eval_done: int = 0  # evaluation batches scored
    nll_full: float = 0.0  # summed NLL of the full model over scored tokens
    eval_tokens: int = 0  # scored tokens, N x (T - 1)
    nll_drop: dict[int, list[float]] = field(default_factory=dict)  # block size -> summed NLL per start
    calib_s: float = 0.0  # wall seconds of each phase
    eval_s: float = 0.0
    sensitivity_s: float = 0.0
    batches_done: int = 0  # batches of both phases this process ran (``stop_after`` counts these)
    compile: dict | None = None  # backend, graphs and graph breaks when compiled

    def to_json(self) -> dict:
        return asdict(self) | {"nll_drop": {str(n): v for n, v in self.nll_drop.items()}}

    @classmethod
    def from_json(cls, doc: dict) -> Progress:
        return cls(**doc | {"nll_drop": {int(n): v for n, v in doc["nll_drop"].items()}})


class Checkpoint:
    """Partial state next to the run directory: ``.<run>.partial[.rankR]/`` holding progress.json and
    statistics.safetensors, replaced atomically as a whole. Loading never unpickles anything."""

    def __init__(self, run_dir: Path, d: dd.Dist):
        rank = f".rank{d.rank}" if d.enabled else ""
        self.path = run_dir.parent / f".{run_dir.name}.partial{rank}"
        self.last = time.monotonic()

    def load(self, key: str, collector: Collector) -> Progress | None:
        """The saved progress (statistics restored into ``collector``), or None if absent or of another run."""
        from safetensors.torch import load_file

        if not (self.path / "progress.json").exists():
            return None
        progress = Progress.from_json(json.loads((self.path / "progress.json").read_text()))
        if progress.key != key:
            return None
        collector.load_state(load_file(str(self.path / "statistics.safetensors")))
        return progress

    def save(self, progress: Progress, collector: Collector, force: bool = False) -> None:
        """Write both files, at most every ``CHECKPOINT_EVERY_S`` seconds unless ``force``."""
        from safetensors.torch import save_file

        if not force and time.monotonic() - self.last < CHECKPOINT_EVERY_S:
            return
        with atomic_dir(self.path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in collector.state().items()},
                      str(tmp / "statistics.safetensors"))
            write_json(tmp / "progress.json", progress.to_json())
        self.last = time.monotonic()

    def clear(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
