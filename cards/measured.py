"""Evaluations Minitron Lab measured (``evaluate`` runs), as a card shows them: beside the published numbers.

A card finds the runs of its model under the runs root (``runs/<model>/eval-*/``): a registry model by
name, a model directory by the fingerprint of its weight files (a pruned or distilled directory has
no name anyone else shares). For a pruned or distilled model the teacher's runs with the same task,
shots, limit and metric are shown beside, with the paired difference over the same documents and its
95% bootstrap interval (``analysis.evaluation.intervals``); a direction is stated only when the
interval excludes zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.core.errors import one_line, warn
from analysis.evaluation.benchmarks import paper_task
from analysis.evaluation.intervals import paired_difference
from analysis.evaluation.results import RESULT, find_evaluations, interval, load_evaluation
from analysis.models.registry import BENCHMARKS, EvalResult


@dataclass
class Measured:
    """One task's measured result (percent for mean-aggregated metrics), with its teacher beside it."""

    task: str  # as requested (``minitron_facts``, ``arc_c``, ...)
    lm_eval_task: str
    shots: int
    metric: str  # lm-eval metric name without the filter ("acc_norm")
    key: str  # lm-eval results key ("acc_norm,none"): the per-document values in samples.json
    value: float
    lo: float | None  # 95% interval (normal, from lm-eval's standard error) or None
    hi: float | None
    percent: bool  # value, lo, hi are percentages (mean-aggregated metrics)
    n: int  # documents
    limit: int | None
    created: str
    harness: str  # "lm-evaluation-harness 0.4.13"
    run: str  # run directory
    fingerprint: str
    published: EvalResult | None = None  # the published number of the same benchmark for this model, if any
    teacher: Measured | None = None  # the teacher's measurement on the same settings
    diff: dict | None = None  # this minus teacher, paired over documents (percent points when percent)

    @property
    def settings(self) -> str:
        limit = f", first {self.limit} documents" if self.limit else ""
        return f"{self.shots}-shot {self.metric}{limit}"


def _entry(name: str, t: dict, doc: dict, run: Path) -> Measured:
    pct = t.get("aggregation") == "mean"
    scale = 100.0 if pct else 1.0
    ci = interval(t)
    return Measured(task=name, lm_eval_task=t["task"], shots=t["shots"], metric=str(t["metric"]).split(",")[0],
                    key=str(t["metric"]),
                    value=t["value"] * scale, lo=ci[0] * scale if ci else None, hi=ci[1] * scale if ci else None,
                    percent=pct, n=t["n"], limit=doc["settings"].get("limit"), created=doc["created"],
                    harness=t["harness"], run=str(run), fingerprint=doc["model"].get("weights_fingerprint", ""))


def measurements(root: str | Path, name: str | None = None, fingerprint: str | None = None) -> list[tuple[Measured, dict]]:
    """The newest measurement of each task of a model, with its per-document values."""
    seen, out = set(), []
    for run in find_evaluations(root, name=name, fingerprint=fingerprint):
        doc, samples = load_evaluation(run)
        try:
            entries = [(_entry(task, t, doc, run), samples.get(task, {})) for task, t in doc["tasks"].items()
                       if task not in seen and isinstance(t.get("value"), (int, float))]
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            warn(f"skipping a damaged evaluate run: {run / RESULT}: a task entry is incomplete "
                 f"({type(exc).__name__}: {one_line(exc)})")
            continue
        seen |= {m.task for m, _ in entries}
        out += entries
    return sorted(out, key=lambda m: m[0].task)


def _published(m: Measured, evals: list[EvalResult]) -> EvalResult | None:
    p = paper_task(m.task) or paper_task(m.lm_eval_task)
    title = BENCHMARKS.get(p.key, {}).get("task") if p else None
    return next((e for e in evals if title and e.task == title), None)


def _paired(mine: dict, theirs: dict, metric_key: str, percent: bool) -> dict | None:
    """Paired difference over the same documents of every leaf task (same order), or None if they differ."""
    a, b = [], []
    for leaf, values in mine.items():
        other = theirs.get(leaf, {}).get(metric_key)
        if other is None or metric_key not in values or len(other) != len(values[metric_key]):
            return None
        a += other
        b += values[metric_key]
    if not a:
        return None
    iv = paired_difference(a, b).to_json()
    scale = 100.0 if percent else 1.0
    return {k: v * scale if k in ("value", "lo", "hi") else v for k, v in iv.items()}


def measured_for(root: str | Path, name: str | None, fingerprint: str | None, evals: list[EvalResult],
                 teacher: str | None = None) -> list[Measured]:
    """A card's measured evaluations; ``teacher``'s runs (by registry name) beside them when given."""
    mine = measurements(root, name=name, fingerprint=fingerprint)
    theirs = measurements(root, name=teacher) if teacher else []
    out = []
    for m, samples in mine:
        m.published = _published(m, evals)
        match = next(((t, s) for t, s in theirs if (t.lm_eval_task, t.shots, t.limit, t.metric) ==
                      (m.lm_eval_task, m.shots, m.limit, m.metric)), None)
        if match:
            m.teacher = match[0]
            # a mean over documents differs by the mean of per-document differences; other aggregations do not
            m.diff = _paired(samples, match[1], m.key, m.percent) if m.percent else None
        out.append(m)
    return out
