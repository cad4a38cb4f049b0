"""Card directories: data + figures + rendered text, written atomically under the output contract.

``write_cards`` (the ``card`` command) checks every target before drawing anything: a new or empty
directory, one minitron-lab made (a pruned model's directory, whose README.md it wrote), or, with
``force``, any directory, where only the card's own files are replaced. A README.md or figure that
the user put there is never overwritten without ``force``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from analysis.core.errors import MinitronError
from analysis.core.io import check_output
from cards.data import CardData, Figure, build, from_directory
from cards.render import load_template, render, save, to_html

DEFAULT_OUT = Path("cards/out")
FAMILY = ("15B", "8B", "4B")  # --all
FORMATS = ("md", "html")

CAPTIONS = {
    "mmlu_vs_tokens": "MMLU (5-shot) against training tokens: the students reach their scores with 94B "
                      "distillation tokens (arXiv:2407.14679, Figure 1).",
    "benchmarks": "Published benchmark scores of Nemotron-4 15B, Minitron-8B and Minitron-4B next to peers.",
    "family_architecture": "Widths and parameter counts of the family, computed from the architectures.",
    "layer_sensitivity": "Per layer: held-out loss with the layer removed, Block Importance and angular "
                         "distance, with their rank agreement.",
    "block_drop": "Held-out loss when a contiguous block of layers is removed, by start position and block size.",
    "head_importance": "Attention-head importance per layer; outlined heads are those a half-width head "
                       "target keeps within each key/value group.",
    "neuron_importance": "MLP neuron importance, sorted within each layer, with the shares the 8B and 4B "
                         "targets keep.",
    "channel_importance": "Embedding-channel importance, sorted, with the 8B and 4B cut lines scaled to "
                          "this width.",
    "aggregation": "How the nine batch/sequence aggregations rank embedding channels and how much their "
                   "kept sets overlap.",
    "ranking_stability": "How much the kept channels, neurons and heads move when the calibration windows are "
                         "resampled, and how the overlap with the full-sample kept set grows with the sample count.",
}


def _figures(written: list[Path], stage: Path) -> list[Figure]:
    return [Figure(p.stem, CAPTIONS.get(p.stem, p.stem.replace("_", " ")), str(p.relative_to(stage)))
            for p in written if p.suffix == ".png"]


def _family_figures(card: CardData) -> bool:
    return card.role in ("teacher", "student")


def attach_figures(card: CardData, stage: Path) -> dict[str, Path]:
    """Draw the card's figures into ``stage/figures`` and record them on ``card``; returns files to copy."""
    from analysis.importance.results import load_run
    from figures.render import render_family, render_run

    written = []
    if _family_figures(card):
        family = render_family(stage / "figures")
        card.figures = _figures(family, stage)
        written += family
    if card.analysis:
        run = render_run(load_run(card.analysis.path), stage / "figures")
        card.analysis.figures = _figures(run, stage)
        written += run
    return {str(p.relative_to(stage)): p for p in written}


def card_files(card: CardData, fmt: str) -> list[str]:
    """The files a card writes into its directory (known before anything is drawn)."""
    from safetensors import safe_open

    from analysis.importance.results import TENSORS
    from figures.render import FAMILY_FIGURES, FORMATS, RUN_FIGURES

    if fmt == "html":
        return ["card.html"]
    names = list(FAMILY_FIGURES) if _family_figures(card) else []
    if card.analysis:
        with safe_open(str(Path(card.analysis.path) / TENSORS), "pt") as f:
            have = set(f.keys())
        names += [n for n, (needs, _) in RUN_FIGURES.items() if set(needs) <= have]
    return ["README.md"] + [f"figures/{n}.{e}" for n in names for e in FORMATS]


def write_card(card: CardData, out_dir: str | Path, template: str | Path | None = None, fmt: str = "md") -> Path:
    """Render ``card`` (Markdown README.md with its figures, or one self-contained card.html) into ``out_dir``."""
    if fmt not in FORMATS:
        raise MinitronError(f"unknown format '{fmt}'; choose from {', '.join(FORMATS)}")
    with tempfile.TemporaryDirectory(prefix="minitron-card-") as tmp:
        stage = Path(tmp)
        files = attach_figures(card, stage)
        text = render(card, template)  # template errors surface here, before anything is written
        if fmt == "html":
            return save(to_html(text, stage, card.display_name), out_dir, name="card.html")
        return save(text, out_dir, files)


def write_cards(models: list[str], out: str | Path | None = None, template=None, fmt: str = "md",
                runs_root: str | Path = "runs", force: bool = False) -> list[Path]:
    """Cards for registry names/aliases or model directories; each into ``out/<name>/``.

    A single model directory without ``out`` gets its card written into the directory itself. Every
    model is resolved and every target checked (``check_output``) before anything is drawn or written.
    """
    if fmt not in FORMATS:
        raise MinitronError(f"unknown --format '{fmt}'; choose from {', '.join(FORMATS)}")
    load_template(template)  # a missing file or a syntax error costs nothing
    cards = [build(m, runs_root) for m in models]
    targets = []
    for card in cards:
        if out is None and card.source_dir is not None:
            target = card.source_dir
        else:
            target = Path(out or DEFAULT_OUT) / card.name if (len(cards) > 1 or out is None) else Path(out)
        targets.append(check_output(target, force, card_files(card, fmt)))
    return [write_card(card, target, template, fmt) for card, target in zip(cards, targets)]


def write_card_for_directory(model_dir: str | Path, runs_root: str | Path = "runs",
                             final: str | Path | None = None) -> Path:
    """Write README.md (and figures) into a model directory, from its config.json and prune_recipe.json.

    ``final``: where the directory will live once a staged (temporary) write is renamed into place;
    the card's name and usage path are taken from it.
    """
    return write_card(from_directory(model_dir, runs_root, final=final), Path(model_dir))
