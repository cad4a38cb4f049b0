"""Hugging Face hub access: offline unless the user asked for downloads (``--download``).

Models already follow this in ``analysis.models.loading`` (``local_files_only``); datasets and
lm-evaluation-harness tasks read these flags, which the libraries cache at import time, so the block
sets both the environment and the already-read module constants, and restores them after.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def offline(enabled: bool = True) -> Iterator[None]:
    """No hub or dataset downloads inside the block (environment and the libraries' already-read flags)."""
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub

    env = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    flags = [(datasets.config, "HF_DATASETS_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"), (hub, "HF_HUB_OFFLINE")]
    saved = [(mod, name, getattr(mod, name, None)) for mod, name in flags]
    os.environ.update({k: "1" for k in env})
    for mod, name, _ in saved:
        setattr(mod, name, True)
    try:
        yield
    finally:
        for k, v in env.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        for mod, name, value in saved:
            setattr(mod, name, value)
