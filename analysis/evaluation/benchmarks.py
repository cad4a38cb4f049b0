"""Which lm-evaluation-harness task measures each benchmark the paper reports, and the paper's setting for it.

One table, keyed by our benchmark keys (the registry's ``BENCHMARKS``), so ``evaluate --paper-settings``
and the cards agree on shots and metrics. Settings of arXiv:2407.14679 Tables 2 (Nemotron-4 15B,
Minitron 8B) and 3 (Minitron 4B): winogrande 5-shot acc, arc_challenge 25-shot acc_norm, MMLU 5-shot
acc, hellaswag 10-shot acc_norm, gsm8k 5-shot, TruthfulQA 0-shot mc2, XLSum (en) 3-shot rougeL, MBPP and
HumanEval 0-shot pass@1. lm-eval metric keys are ``"<metric>,<filter>"`` as in its results.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.core.errors import MinitronError

TABLES = "arXiv:2407.14679 Tables 2 and 3"


@dataclass(frozen=True)
class PaperTask:
    """One benchmark of the paper and how lm-evaluation-harness runs it."""

    key: str  # our benchmark key
    task: str | None  # lm-eval task or group name; None when lm-eval has no matching task
    shots: int  # the paper's few-shot count
    metric: str  # the paper's metric as an lm-eval results key ("acc_norm,none")
    unsafe: bool = False  # runs model-written code (needs --allow-code-execution)
    note: str = ""  # where lm-eval's task differs from the paper's protocol


PAPER_TASKS: dict[str, PaperTask] = {t.key: t for t in (
    PaperTask("winogrande", "winogrande", 5, "acc,none"),
    PaperTask("arc_c", "arc_challenge", 25, "acc_norm,none"),
    PaperTask("mmlu", "mmlu", 5, "acc,none"),
    PaperTask("hellaswag", "hellaswag", 10, "acc_norm,none"),
    PaperTask("gsm8k", "gsm8k", 5, "exact_match,strict-match"),
    PaperTask("truthfulqa", "truthfulqa_mc2", 0, "acc,none"),
    PaperTask("xlsum", None, 3, "rougeL,none",
              note="lm-evaluation-harness ships no English XLSum task (only African and Japanese subsets)"),
    PaperTask("mbpp", "mbpp", 0, "pass_at_1,none", unsafe=True,
              note="lm-eval's mbpp prompt shows 3 solved examples by default; --paper-settings sets 0 shots"),
    PaperTask("humaneval", "humaneval", 0, "pass@1,create_test", unsafe=True,
              note="the paper samples n=20 at temperature 0.2, top-p 0.95; lm-eval's humaneval is greedy pass@1"),
)}


def paper_task(name: str) -> PaperTask | None:
    """The paper entry for a benchmark key ('arc_c') or an lm-eval task name ('arc_challenge'), else None."""
    key = name.strip().lower()
    if key in PAPER_TASKS:
        return PAPER_TASKS[key]
    return next((t for t in PAPER_TASKS.values() if t.task == key), None)


def checked_paper_task(name: str, allow_code_execution: bool) -> PaperTask | None:
    """``paper_task`` plus the reasons a paper benchmark cannot run here, as one-line errors."""
    t = paper_task(name)
    if t is None:
        return None
    if t.task is None:
        raise MinitronError(f"'{name}': {t.note}; the paper's {t.shots}-shot {t.metric.split(',')[0]} cannot be "
                            "measured with it")
    if t.unsafe and not allow_code_execution:
        raise MinitronError(f"'{name}' runs code the model writes; pass --allow-code-execution to accept that "
                            "(only on a machine where that is safe)")
    return t
