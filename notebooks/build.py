"""Write the notebooks of this folder (outputs empty), and optionally execute them headless.

    python notebooks/build.py                    # regenerate the .ipynb files from the cells below
    python notebooks/build.py --execute [--small] [--only 04]   # run them, figures to notebooks/out/

Notebooks only import and call the library (``analysis.experiments.studies``, ``figures``); every number
and figure they show is produced there. ``MINITRON_NOTEBOOK_SMALL=1`` switches to the CI sizes
(``analysis.experiments.setup.SMALL``); ``MINITRON_NOTEBOOK_OUT`` moves the output folder.
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

SETUP = """from analysis.experiments import studies as ex
from analysis.experiments.setup import prepare, scale
from figures import experiments as fx

sc = scale(SMALL)
setup = prepare(sc, runs=OUT / "runs")
model, run = setup.loaded.model, setup.run
print(sc)
print("held-out windows", tuple(setup.eval_ids.shape), "training windows", tuple(setup.train_ids.shape))"""

RUN_ONLY = """from analysis.experiments.setup import analysis_run, scale

sc = scale(SMALL)
run = analysis_run(sc, runs=OUT / "runs")
print(run.path, "eval loss", round(run.metrics["eval"]["loss"], 4))"""

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
        ("md", ("# Layer sensitivity\nDrop-one-layer loss vs Block Importance, and the contiguous layer-drop "
               "curves of the follow-up paper (arXiv:2408.11796, Figure 8: first and last layers matter most).")),
        ("code", HEADER),
        ("code", RUN_ONLY),
        ("code", """from analysis.experiments import studies as ex
from figures import experiments as fx
from figures import layers

curves = ex.layer_drop_curves(run)
(RESULTS / "layer_drop_curves.json").write_text(json.dumps(curves, indent=1))
print("Spearman BI vs drop loss:", run.metrics.get("rank_agreement"))
for s in curves["summary"]:
    print(f"n={s['n']:2}: cheapest block starts at {s['cheapest_start']} (+{s['cheapest_delta']:.3f} nats), "
          f"costliest at {s['costliest_start']} (+{s['costliest_delta']:.3f}); first/last block +{s['first_delta']:.3f}"
          f" / +{s['last_delta']:.3f}, middle median +{s['middle_median_delta']:.3f}")"""),
        ("code", """figs = {"layer_sensitivity": layers.layer_sensitivity(run), "layer_drop_curves": fx.layer_drop_curves(curves)}
written = [p for name, fig in figs.items() for p in save_figure(fig, FIGURES, name)]
print(*written, sep="\\n")"""),
    ],
    "04_aggregation_study": [
        ("md", ("# Aggregation study (paper Table 11)\nZero-shot loss after pruning the embedded default to "
               "the width ratios of Minitron 8B (and 4B) over Nemotron-4 15B, with importance aggregated each "
               "of the nine batch x sequence ways. The paper found batch=L2 / sequence=mean among the best.")),
        ("code", HEADER),
        ("code", SETUP),
        ("code", """from analysis.models.adapter import DecoderAdapter

arch = DecoderAdapter(model).arch
results = {name: ex.aggregation_study(model, run, ex.paper_target(arch, name), setup.eval_ids) for name in ("8B", "4B")}
for name, res in results.items():
    (RESULTS / f"aggregation_study_{name}.json").write_text(json.dumps(res, indent=1))
    print(f"{name}-like target {res['target']}  unpruned loss {res['teacher_loss']:.3f}  "
          f"Spearman vs paper {res['spearman_vs_paper']:+.2f}")
    for r in res["rows"]:
        print(f"  {r['aggregation']:10} loss {r['loss']:.3f} (rank {r['rank']})   paper {r['paper_loss_8t']:.2f} (rank {r['paper_rank']})")"""),
        ("code", """written = [p for name, res in results.items()
           for p in save_figure(fx.aggregation_study(res), FIGURES, f"aggregation_study_{name}")]
print(*written, sep="\\n")"""),
    ],
    "05_width_vs_depth": [
        ("md", ("# Width vs depth (paper Tables 1 and 13)\nEach variant removes about the same share of "
               "parameters along different axes; every pruned student is then distilled from the unpruned "
               "model for the same steps. The paper: depth pruning looks fine zero-shot, but width wins after "
               "retraining.")),
        ("code", HEADER),
        ("code", SETUP),
        ("code", """res = ex.pruning_axes(model, run, setup.eval_ids, setup.train_ids, setup.cfg, fraction=sc.prune_fraction)
(RESULTS / "pruning_axes.json").write_text(json.dumps(res, indent=1))
print(f"unpruned loss {res['teacher_loss']:.3f}, {res['teacher_params'] / 1e6:.1f}M parameters")
for r in res["rows"]:
    print(f"{r['variant']:28} {r['params'] / 1e6:6.1f}M  zero-shot {r['zero_shot_loss']:.3f}  "
          f"distilled {r['distilled_loss']:.3f}  KL {r['zero_shot_kl']:.3f} -> {r['distilled_kl']:.3f}")"""),
        ("code", """written = save_figure(fx.pruning_axes(res), FIGURES, "pruning_axes")
print(*written, sep="\\n")"""),
    ],
    "06_distill_vs_finetune": [
        ("md", ("# Distillation vs fine-tuning\nThe same pruned student (the Minitron 8B width ratios) trained for "
               "the same steps on the same windows, by logit distillation (forward KL to the teacher, the "
               "paper's recipe) and by plain next-token fine-tuning. Held-out loss and KL to the teacher.")),
        ("code", HEADER),
        ("code", SETUP),
        ("code", """from analysis.models.adapter import DecoderAdapter

student = ex.prune_model(model, run, ex.paper_target(DecoderAdapter(model).arch, "8B"))
res = ex.distill_vs_finetune(model, student, setup.train_ids, setup.eval_ids, setup.compare_cfg)
(RESULTS / "distill_vs_finetune.json").write_text(json.dumps(res, indent=1))
print(f"student {res['params'] / 1e6:.1f}M, teacher loss {res['teacher_loss']:.3f}, {setup.compare_cfg.steps} steps")
for r in res["rows"]:
    print(f"{r['mode']:9} loss {r['loss_before']:.3f} -> {r['loss_after']:.3f}   KL {r['kl_before']:.3f} -> {r['kl_after']:.3f}")"""),
        ("code", """written = save_figure(fx.distill_vs_finetune(res), FIGURES, "distill_vs_finetune")
print(*written, sep="\\n")"""),
    ],
    "07_head_merging": [
        ("md", ("# Head residual merging (paper §2.3)\nHeads-only pruning of the embedded default with and without "
               "folding the pruned query heads into the kept ones (`analysis.pruning.merge`), scored on the same "
               "held-out windows zero-shot and after distillation: paired differences with 95% bootstrap "
               "intervals over windows. A direction is claimed only where the interval excludes zero.")),
        ("code", HEADER),
        ("code", SETUP),
        ("code", """from dataclasses import replace

from analysis.experiments.setup import unused_windows

eval_ids = unused_windows(setup, 8 if SMALL else 48)  # more held-out windows than setup.eval_ids, seen by nothing
res = ex.head_merge_study(model, run, eval_ids, setup.train_ids, replace(setup.cfg, eval_every=0),
                          seeds=(0,) if SMALL else (0, 1))
(RESULTS / "head_merging.json").write_text(json.dumps(res, indent=1))
print(f"teacher loss {res['teacher_loss']:.3f} on {res['eval_windows']} windows")
for r in res["rows"]:
    print(f"{res['teacher_heads']} -> {r['heads']} heads, {r['phase']:24} merged {r['merged_loss']:.3f}  plain "
          f"{r['plain_loss']:.3f}  diff {r['diff']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]  {r['direction']}")"""),
        ("code", """written = save_figure(fx.head_merge(res), FIGURES, "head_merging")
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
