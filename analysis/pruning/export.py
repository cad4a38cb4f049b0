"""Write a pruned model as a plain Hugging Face directory with its ``prune_recipe.json``, atomically.

Layout: ``analysis.models.saving`` (config, safetensors, generation config, tokenizer) plus the recipe;
the CLI adds the model card through ``finalize``. A dry run writes only config.json and the recipe.
``out`` follows the output contract (``analysis.core.io.check_output``); an error never leaves a
half-written model.
"""

from __future__ import annotations

from pathlib import Path

from analysis.core.io import check_output
from analysis.models.saving import Finalize, save_config_dir, save_model_dir

RECIPE = "prune_recipe.json"
RECIPE_KEYS = ("teacher", "teacher_params", "params", "target", "depth_metric", "aggregation",
               "ppl_before", "ppl_after", "importance_run")


def _checked(recipe: dict) -> dict:
    missing = [k for k in RECIPE_KEYS if k not in recipe]
    if missing:
        raise ValueError(f"prune recipe lacks {missing}")
    return recipe


def export_model(model, tokenizer, out: str | Path, recipe: dict, force: bool = False,
                 finalize: Finalize | None = None) -> Path:
    """The pruned model, its tokenizer and the recipe into ``out``."""
    check_output(out, force)
    return save_model_dir(model, out, tokenizer, documents={RECIPE: _checked(recipe)}, finalize=finalize,
                          command="prune")


def export_config(config, out: str | Path, recipe: dict, force: bool = False) -> Path:
    """Dry run: only config.json and the recipe, no weights."""
    check_output(out, force)
    return save_config_dir(config, out, documents={RECIPE: _checked(recipe)}, command="prune")
