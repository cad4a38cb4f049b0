"""Every notebook executes headless with the small settings and writes its figures; none has outputs in git.

The kernel is this very interpreter (a kernelspec written to a temporary JUPYTER_PATH), so the test
does not depend on which kernels a machine has installed, only on ipykernel being importable.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # a Jupyter kernel per notebook
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
KERNEL = "minitron-lab-test"
# Figures each notebook must write (PNG and SVG of each).
EXPECTED = {
    "01_family_overview": ["mmlu_vs_tokens", "benchmarks", "family_architecture", "pruning_methods"],
    "02_importance_maps": ["head_importance", "neuron_importance", "channel_importance", "aggregation_agreement"],
    "03_layer_sensitivity": ["layer_sensitivity", "layer_drop_curves"],
    "04_aggregation_study": ["aggregation_study"],
    "05_width_vs_depth": ["pruning_axes"],
    "06_distill_vs_finetune": ["distill_vs_finetune"],
    "07_head_merging": ["head_merging"],
}


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec for sys.executable, small settings, one output folder shared by all notebooks."""
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec = jupyter / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "minitron-lab test", "language": "python"}))
    out = tmp_path_factory.mktemp("notebook-out")
    env = {"JUPYTER_PATH": str(jupyter), "MINITRON_NOTEBOOK_SMALL": "1", "MINITRON_NOTEBOOK_OUT": str(out),
           "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    yield out
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_every_notebook_is_listed():
    assert [p.stem for p in NOTEBOOKS] == list(EXPECTED)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_no_outputs_and_defines_no_functions(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"
            assert "def " not in cell.source and "lambda" not in cell.source, f"{path.name}: notebooks only call"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_and_writes_its_figures(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=300, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    for name in EXPECTED[path.stem]:
        for fmt in ("png", "svg"):
            f = kernel_env / "figures" / f"{name}.{fmt}"
            assert f.exists() and f.stat().st_size > 1000, f"{path.name} did not write {f.name}"
    assert time.perf_counter() - t0 < 240, "a notebook's small settings should run in well under the CI budget"
