"""Where an analyze run stands, and its resumable checkpoint on disk (JSON + safetensors, never a pickle)."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from analysis.core import distributed as dd
from analysis.core.errors import MinitronError, one_line
from analysis.core.io import atomic_dir, read_json, write_json
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
    wall_s: float = 0.0  # wall seconds of the sessions so far, up to the last checkpoint (resumed totals add up)
    sessions: int = 1  # processes that worked on the run (1 + resumes)

    def to_json(self) -> dict:
        return asdict(self) | {"nll_drop": {str(n): v for n, v in self.nll_drop.items()}}

    @classmethod
    def from_json(cls, doc: dict) -> Progress:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known} | {"nll_drop": {int(n): v for n, v in doc["nll_drop"].items()}})


class Checkpoint:
    """Partial state next to the run directory: ``.<run>.partial[.rankR]/`` holding progress.json and
    statistics.safetensors, replaced atomically as a whole. Loading never unpickles anything."""

    def __init__(self, run_dir: Path, d: dd.Dist):
        rank = f".rank{d.rank}" if d.enabled else ""
        self.path = run_dir.parent / f".{run_dir.name}.partial{rank}"
        self.last = time.monotonic()

    def load(self, key: str, collector: Collector) -> Progress | None:
        """The saved progress (statistics restored into ``collector``), or None if absent or of another run.

        A damaged checkpoint is a one-line error naming it: resuming from it would give wrong numbers.
        """
        from safetensors.torch import load_file

        if not (self.path / "progress.json").exists():
            return None
        doc = read_json(self.path / "progress.json", "analysis checkpoint")
        try:
            progress = Progress.from_json(doc)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise self._damaged(f"progress.json does not describe a run ({one_line(exc)})") from None
        if progress.key != key:
            return None
        try:
            collector.load_state(load_file(str(self.path / "statistics.safetensors")))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own types for a damaged file
            raise self._damaged(f"statistics.safetensors is unreadable ({one_line(exc)})") from None
        return progress

    def _damaged(self, why: str) -> MinitronError:
        return MinitronError(f"{self.path}: damaged analysis checkpoint: {why}; rerun without --resume to start "
                             "over (the damaged checkpoint is then replaced)")

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
