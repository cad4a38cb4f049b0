"""Write the notebooks of this folder (outputs empty), and optionally execute them headless.

    python notebooks/build.py                    # regenerate the .ipynb files from the cells below
    python notebooks/build.py --execute [--small] [--only 04]   # run them, figures to notebooks/out/

Notebooks only import and call the library (``analysis.experiments.runner``, the same functions as
``python cli.py experiment NAME``, and ``figures``); every number and figure they show is produced there.
``MINITRON_NOTEBOOK_SMALL=1`` switches to the CI sizes (``analysis.experiments.setup.SMALL``);
``MINITRON_NOTEBOOK_OUT`` moves the output folder (results there, never in the committed notebooks/results/).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

HEADER = """import json
import os
from pathlib import Path

import matplotlib.pyplot as plt

from figures.render import save_figure

SMALL = os.environ.get("MINITRON_NOTEBOOK_SMALL", "0") == "1"  # CI: seconds-sized settings
OUT = Path(os.environ.get("MINITRON_NOTEBOOK_OUT", "out"))  # figures/, results/, runs/
FIGURES, RESULTS = OUT / "figures", OUT / "results"
RESULTS.mkdir(parents=True, exist_ok=True)"""

EXPERIMENT = """from IPython.display import Markdown, display

from analysis.experiments.report import RENDERERS
from analysis.experiments.runner import run_experiments
from analysis.experiments.setup import scale
from figures import experiments as fx

sc = scale(SMALL)
[path] = run_experiments(["{name}"], sc, sc.seeds, runs=OUT / "runs", out=RESULTS)
doc = json.loads(path.read_text())
display(Markdown("\\n".join(RENDERERS["{name}"](doc))))"""

RUN_ONLY = """from analysis.experiments.setup import analysis_run, scale

sc = scale(SMALL)
run = analysis_run(sc, runs=OUT / "runs", seed=0)  # the first seed's analysis (its selection windows)
print(run.path, "selection-window loss", round(run.metrics["eval"]["loss"], 4))"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01_family_overview": [
        ("md", ("# The Minitron family\nPaper Figure 1 (MMLU vs training tokens) and the comparison tables "
               "(benchmarks vs similar-size models; other pruning methods), drawn from the registry and "
               "`analysis/paper.py`. Parameter counts are computed from each architecture.")),
        ("code", HEADER),
        ("code", """from analysis.models.registry import get
from figures import experiments as fx
from figures import family

for alias in ("15B", "8B", "4B", "smollm2-135m"):
    spec = get(alias)
    a, p = spec.arch, spec.arch.params()
    print(f"{spec.display_name or spec.name:28} layers {a.layers:3}  hidden {a.hidden:5}  heads {a.heads:3}/{a.kv_heads}"
          f"  MLP {a.mlp:6}  params {p['total'] / 1e9:7.3f}B (non-embedding {p['non_embedding'] / 1e9:.3f}B)")"""),
        ("code", """figs = {"mmlu_vs_tokens": family.mmlu_vs_tokens().figure, "benchmarks": family.benchmark_comparison().figure,
        "family_architecture": family.family_architecture(), "pruning_methods": fx.pruning_methods()}
written = [p for name, fig in figs.items() for p in save_figure(fig, FIGURES, name)]
print(*written, sep="\\n")"""),
    ],
    "02_importance_maps": [
        ("md", ("# Importance maps\nHead, neuron and embedding-channel importance of the embedded default "
               "(paper §2.2: batch=L2, sequence=mean by default), and how much the nine aggregations agree.")),
        ("code", HEADER),
        ("code", RUN_ONLY),
        ("code", """from figures import importance

figs = {"head_importance": importance.head_heatmap(run).figure, "neuron_importance": importance.neuron_importance(run).figure,
        "channel_importance": importance.channel_importance(run).figure,
        "aggregation_agreement": importance.aggregation_comparison(run)}
written = [p for name, fig in figs.items() for p in save_figure(fig, FIGURES, name)]
print(*written, sep="\\n")"""),
    ],
    "03_layer_sensitivity": [
        ("md", ("# Layer sensitivity\nDrop-one-layer loss vs Block Importance for the first seed, and the contiguous "
               "layer-drop curves of the follow-up paper (arXiv:2408.11796, Figure 8: first and last layers matter "
               "most) over every seed, with 95% intervals.")),
        ("code", HEADER),
        ("code", RUN_ONLY),
        ("code", EXPERIMENT.replace("{name}", "layer-drop")),
        ("code", """from figures import layers

figs = {"layer_sensitivity": layers.layer_sensitivity(run), "layer_drop_curves": fx.layer_drop_curves(doc)}
written = [p for name, fig in figs.items() for p in save_figure(fig, FIGURES, name)]
print(*written, sep="\\n")"""),
    ],
    "04_aggregation_study": [
        ("md", ("# Aggregation study (paper Table 11)\nZero-shot loss after pruning the embedded default to the width "
               "ratios of Minitron 8B, of the paper's study target (Nemotron-3 8B over Nemotron-4 15B: heads pruned "
               "too) and of Minitron 4B, with importance aggregated each of the nine batch x sequence ways, over "
               "seeds. The paper found batch=L2 / sequence=mean among the best.")),
        ("code", HEADER),
        ("code", EXPERIMENT.replace("{name}", "aggregation")),
        ("code", """written = save_figure(fx.aggregation_study(doc), FIGURES, "aggregation_study")
print(*written, sep="\\n")"""),
    ],
    "05_width_vs_depth": [
        ("md", ("# Width vs depth (paper Table 1)\nAt the paper's shapes (width to the study target, depth to half "
               "the layers, combinations at the same size), every pruned student distilled from the unpruned model "
               "for the same steps; and a zero-shot map of each axis at a matched share of parameters. The paper: "
               "depth pruning looks fine zero-shot, but width wins after retraining.")),
        ("code", HEADER),
        ("code", EXPERIMENT.replace("{name}", "pruning-axes")),
        ("code", """written = save_figure(fx.pruning_axes(doc), FIGURES, "pruning_axes")
print(*written, sep="\\n")"""),
    ],
    "06_distill_vs_finetune": [
        ("md", ("# Distillation vs fine-tuning\nThe same pruned student (the Minitron 8B width ratios) trained for "
               "the same steps on the same windows, by logit distillation (forward KL to the teacher, the "
               "paper's recipe) and by plain next-token fine-tuning, over seeds. Held-out loss and KL to the teacher.")),
        ("code", HEADER),
        ("code", EXPERIMENT.replace("{name}", "distill-vs-finetune")),
        ("code", """written = save_figure(fx.distill_vs_finetune(doc), FIGURES, "distill_vs_finetune")
print(*written, sep="\\n")"""),
    ],
    "07_head_merging": [
        ("md", ("# Head residual merging (paper §2.3)\nHeads-only pruning of the embedded default with and without "
               "folding the pruned query heads into the kept ones (`analysis.pruning.merge`), scored on the same "
               "held-out windows zero-shot and after distillation, over seeds: paired differences with 95% t-intervals. "
               "A direction is claimed only where the interval excludes zero.")),
        ("code", HEADER),
        ("code", EXPERIMENT.replace("{name}", "head-merge")),
        ("code", """written = save_figure(fx.head_merge(doc), FIGURES, "head_merging")
print(*written, sep="\\n")"""),
    ],
}


def build() -> list[Path]:
    """Write every notebook with empty outputs; returns the paths."""
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells])
        for i, cell in enumerate(nb.cells):
            cell.id = f"cell-{i}"  # stable ids: rebuilding an unchanged notebook leaves git clean
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = HERE / f"{name}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def execute(path: Path, timeout: int = 3600) -> float:
    """Run one notebook headless in its own folder (outputs are not written back); returns seconds."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--execute", action="store_true", help="run the notebooks after writing them")
    parser.add_argument("--small", action="store_true", help="CI sizes (MINITRON_NOTEBOOK_SMALL=1)")
    parser.add_argument("--only", default="", help="run only notebooks whose name starts with this")
    args = parser.parse_args()
    paths = build()
    if args.execute:
        os.environ["MINITRON_NOTEBOOK_SMALL"] = "1" if args.small else "0"
        for path in paths:
            if path.stem.startswith(args.only):
                print(f"{path.name}: {execute(path):.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
