"""Write a pruned model as a plain Hugging Face directory, atomically.

Layout: config.json, model.safetensors, generation_config.json, tokenizer files (when the teacher
has one), prune_recipe.json and the generated card README.md. A dry run writes only
config.json and prune_recipe.json. Everything is written to a temporary sibling directory and renamed
into place, so an error never leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from analysis.core.errors import MinitronError
from analysis.core.io import atomic_dir as shared_atomic_dir

RECIPE = "prune_recipe.json"
RECIPE_KEYS = ("teacher", "teacher_params", "params", "target", "depth_metric", "aggregation",
               "ppl_before", "ppl_after", "importance_run")


@contextlib.contextmanager
def atomic_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block succeeds.

    An existing non-empty ``out`` is replaced only with ``force``; on error the temporary
    directory is removed and ``out`` is untouched.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise MinitronError(f"{out} already exists and is not empty; pass --force to replace it")
    with shared_atomic_dir(out) as tmp:
        yield tmp


def write_recipe(directory: Path, recipe: dict) -> None:
    missing = [k for k in RECIPE_KEYS if k not in recipe]
    if missing:
        raise ValueError(f"prune recipe lacks {missing}")
    (directory / RECIPE).write_text(json.dumps(recipe, indent=2) + "\n")


def _write_card(directory: Path, final: Path) -> None:
    """README.md from config.json + prune_recipe.json, named after the final directory."""
    from cards import write_card_for_directory  # lazy: cards imports the analysis package

    write_card_for_directory(directory, final=final)


def export_model(model, tokenizer, out: str | Path, recipe: dict, force: bool = False) -> Path:
    """config + safetensors + generation config + tokenizer + recipe (+ card) into ``out``."""
    with atomic_dir(out, force) as tmp:
        model.save_pretrained(tmp)  # safetensors; tied weights stored once
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_recipe(tmp, recipe)
        _write_card(tmp, Path(out))
    return Path(out)


def export_config(config, out: str | Path, recipe: dict, force: bool = False) -> Path:
    """Dry run: only config.json and the recipe, no weights."""
    with atomic_dir(out, force) as tmp:
        config.save_pretrained(tmp)
        write_recipe(tmp, recipe)
    return Path(out)
