"""Evaluate run directories: reading them back, finding a model's runs, and their 95% intervals.

``runs/<model>/eval-<key>/`` holds ``evaluation.json`` (written by ``analysis.evaluation.harness``) and
``samples.json`` (per task, leaf task and "metric,filter": one value per document, in document order).
"""

from __future__ import annotations

from pathlib import Path

from analysis.core.errors import MinitronError, warn
from analysis.core.io import read_json

RESULT = "evaluation.json"
SAMPLES = "samples.json"
RUN_PREFIX = "eval-"  # runs/<model>/eval-<key>/: beside the analysis runs, never mistaken for one


def interval(t: dict) -> tuple[float, float] | None:
    """95% normal interval (value ± 1.96 standard errors) of a mean-aggregated headline metric, else None."""
    v, se = t.get("value"), t.get("stderr")
    if t.get("aggregation") != "mean" or not isinstance(v, (int, float)) or not isinstance(se, (int, float)):
        return None
    return v - 1.96 * se, v + 1.96 * se



def print_results(doc: dict, console) -> None:
    """One row per task: shots, metric, value with its 95% interval (1.96 standard errors), documents."""
    from rich.table import Table

    table = Table(title=f"{doc['model']['name']}: lm-evaluation-harness {doc['versions']['lm_eval']}")
    for col in ("task", "shots", "metric", "value", "95% interval", "documents"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for name, t in doc["tasks"].items():
        v, ci = t["value"], interval(t)
        table.add_row(name, str(t["shots"]), str(t["metric"]).removesuffix(",none"),
                      f"{v:.4f}" if isinstance(v, float) else str(v), f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "-",
                      str(t["n"]))
    console.print(table)


def load_evaluation(path: str | Path) -> tuple[dict, dict]:
    """(evaluation.json, samples.json) of an evaluate run directory; a damaged one is named in one line."""
    path = Path(path)
    if not (path / RESULT).is_file():
        raise MinitronError(f"{path}: not an evaluate run (no {RESULT})")
    doc = read_json(path / RESULT, "evaluation record")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), dict) for k in ("model", "tasks", "settings")):
        raise MinitronError(f"{path / RESULT}: corrupt evaluation record: no 'model', 'tasks' or 'settings' section")
    samples = read_json(path / SAMPLES, "per-document results") if (path / SAMPLES).is_file() else {}
    if not isinstance(samples, dict):
        raise MinitronError(f"{path / SAMPLES}: corrupt per-document results: not an object")
    return doc, samples


def find_evaluations(root: str | Path = "runs", name: str | None = None, fingerprint: str | None = None) -> list[Path]:
    """Evaluate runs under ``root/*/eval-*`` of a model, matched by weights fingerprint or name; newest first.

    A run whose record cannot be read is skipped with a warning naming it (one bad directory never hides the others).
    """
    found = []
    for p in Path(root).glob(f"*/{RUN_PREFIX}*/{RESULT}"):
        try:
            model = load_evaluation(p.parent)[0]["model"]
        except MinitronError as exc:
            warn(f"skipping a damaged evaluate run: {exc}")
            continue
        if (fingerprint and model.get("weights_fingerprint") == fingerprint) or (name and model.get("name") == name):
            found.append(p.parent)
    return sorted(found, key=lambda d: (d / RESULT).stat().st_mtime, reverse=True)
