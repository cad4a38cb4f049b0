"""What every result records about where it came from: library versions and the time it was made."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path


def versions() -> dict[str, str]:
    """Versions of the libraries that change the numbers, and of this toolkit."""
    from importlib.metadata import PackageNotFoundError, version

    import torch
    import transformers

    try:
        ours = version("minitron-lab")
    except PackageNotFoundError:  # running from a checkout without install
        ours = "0.1.0+checkout"
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "minitron_lab": ours}


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the checkout holding ``path`` (default: this package), '+dirty' when files differ; None outside git."""
    where = Path(path) if path else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def machine() -> dict:
    """Where a timing was measured: CPU count, torch threads, processor."""
    import torch

    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(), "system": platform.system()}
