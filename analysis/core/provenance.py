"""What every result records about where it came from: library versions and the time it was made."""

from __future__ import annotations

import platform
from datetime import datetime, timezone


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
