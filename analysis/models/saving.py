"""Write a model as a plain Hugging Face directory, atomically: what ``from_pretrained`` loads back.

Layout: config.json, model.safetensors (tied weights stored once), generation_config.json, the
tokenizer files when there is a tokenizer, plus JSON ``documents`` (``prune_recipe.json``,
``distill.json``) and copied ``files``. Everything is built in a temporary sibling directory and
renamed into place. ``finalize(stage, final)`` runs on the staged directory just before the rename:
the caller's hook for files derived from the rest (the CLI writes the model card there), so the
directory appears with everything or not at all, and the library never imports its presentation layer.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from analysis.core.io import output_dir, write_json

Finalize = Callable[[Path, Path], None]  # (staged directory, final directory) -> None


def _extras(stage: Path, documents: dict[str, dict] | None, files: Iterable[Path]) -> None:
    for name, doc in (documents or {}).items():
        write_json(stage / name, doc)
    for path in files:
        shutil.copy(path, stage / Path(path).name)


def save_model_dir(model, out: str | Path, tokenizer=None, documents: dict[str, dict] | None = None,
                   files: Iterable[Path] = (), finalize: Finalize | None = None, command: str = "save") -> Path:
    """config + safetensors + generation config (+ tokenizer, documents, files) into ``out``.

    Written under the output contract (``analysis.core.io.output_dir``); ``command`` names the writer.
    """
    out = Path(out)
    with output_dir(out, command) as stage:
        model.save_pretrained(stage)  # safetensors; records tied weights the way from_pretrained expects
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(stage)
        if tokenizer is not None:
            tokenizer.save_pretrained(stage)
        _extras(stage, documents, files)
        if finalize is not None:
            finalize(stage, out)
    return out


def save_config_dir(config, out: str | Path, documents: dict[str, dict] | None = None, command: str = "save") -> Path:
    """Shapes only: config.json (and documents), no weights."""
    out = Path(out)
    with output_dir(out, command) as stage:
        config.save_pretrained(stage)
        _extras(stage, documents, ())
    return out
