"""Commands that report on a model: card, evaluate, compare, experiment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analysis.core import validate as V
from analysis.core.errors import MinitronError
from cli_commands.options import (
    MODEL_HELP,
    AllowPickle,
    Device,
    Download,
    Dtype,
    Force,
    Model,
    TrustRemoteCode,
    _choice,
    _load,
    _wide,
    app,
    checked,
    console,
    say,
)


@app.command(rich_help_panel="Report and publish")
def card(
    model: Annotated[str | None, typer.Option("--model", "-m", help="registry name/alias (8B, 4B, 15B), model or run directory")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="cards for Nemotron-4 15B, Minitron-8B and Minitron-4B")] = False,
    out: Annotated[str | None, typer.Option("--out", help="output directory (default cards/out/<model>/)")] = None,
    template: Annotated[str | None, typer.Option("--template", help="your own jinja2 template (sandboxed, time- and size-limited)")] = None,
    fmt: Annotated[str, typer.Option("--format", callback=_choice("md", "html"),
                                     help="md (README.md + figures) or html (one self-contained file)")] = "md",
    check: Annotated[str | None, typer.Option("--check", help="check a card's architecture claims instead")] = None,
    runs: Annotated[str, typer.Option("--runs", help="where analysis runs live (runs/<model>/<run-id>/)")] = "runs",
    force: Force = False,
):
    """Write a model card (front matter, architecture from config, published numbers, analysis), or check one."""
    if check:
        _check_card(check, model)
        return
    from cards.publish import FAMILY, write_cards

    if bool(model) == all_models:
        raise MinitronError("pass exactly one of --model M or --all (or --check PATH)")
    for path in write_cards(list(FAMILY) if all_models else [model], out, template, fmt, runs, force=force):
        print(path)


def _check_card(path: str, model: str | None) -> None:
    from cards.check import check_card

    claims, bad = check_card(path, model)
    if not claims:
        raise MinitronError(f"{path}: no architecture claims found (pass --model if the card names no model)")
    for d in bad:
        print(f"{path}:{d}")
    say(f"{len(claims)} architecture claims checked, {len(bad)} disagree")
    if bad:
        raise typer.Exit(1)

@app.command(rich_help_panel="Report and publish")
def evaluate(
    model: Model = "smollm2-135m",
    tasks: Annotated[str, typer.Option("--tasks", help="comma-separated: lm-eval tasks, benchmark keys (mmlu, arc_c, "
                                       "...), our minitron_facts / minitron_cloze, or task YAML paths")] = "minitron_facts",
    num_fewshot: Annotated[int | None, typer.Option("--num-fewshot", callback=checked(V.SHOTS), help="shots for every task (default: each task's)")] = None,
    paper_settings: Annotated[bool, typer.Option("--paper-settings", help="the shots and metric of the paper's Tables 2/3")] = False,
    limit: Annotated[int | None, typer.Option("--limit", callback=checked(V.LIMIT),
                                               help="at most N documents per task")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH), help="requests per forward")] = 8,
    include: Annotated[list[str] | None, typer.Option("--include", help="a folder of lm-eval task YAMLs (repeatable)")] = None,
    allow_code_execution: Annotated[bool, typer.Option("--allow-code-execution", help="run model-written code (MBPP, HumanEval)")] = False,
    dtype: Dtype = "auto",
    device: Device = "auto",
    out: Annotated[str | None, typer.Option("--out", help="output directory (default runs/<model>/eval-<id>)")] = None,
    force: Force = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Annotated[bool, typer.Option("--download", help="allow model and dataset downloads")] = False,
):
    """Downstream accuracy through lm-evaluation-harness, on the model as this toolkit loads it."""
    from analysis.evaluation.harness import EvalConfig
    from analysis.evaluation.harness import evaluate as run_evaluate

    cfg = EvalConfig(load=_load(model, dtype, device, False, trust_remote_code, allow_pickle, download),
                     tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), num_fewshot=num_fewshot,
                     paper_settings=paper_settings, limit=limit, batch_size=batch_size, include=tuple(include or ()),
                     allow_code_execution=allow_code_execution)
    run_dir = run_evaluate(cfg, out=out, force=force, console=_wide())
    say(f"results: {run_dir}")


@app.command(rich_help_panel="Report and publish")
def compare(
    student: Annotated[str, typer.Option("--student", "-s", help="the compressed model: a pruned or distilled directory")],
    teacher: Annotated[str | None, typer.Option("--teacher", "-t", help=MODEL_HELP + " (default: the student's "
                                                "prune_recipe.json teacher)")] = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help="a second student (default: the pruned model a "
                                                 "distilled student started from)")] = None,
    data: Annotated[str | None, typer.Option("--data", help="text source (default: the student's held-out windows)")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", callback=checked(V.SEQ_LEN), help="tokens per window")] = None,
    eval_samples: Annotated[int | None, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                                     help="held-out windows")] = None,
    seed: Annotated[int | None, typer.Option("--seed", callback=checked(V.SEED), help="window permutation seed")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH), help="windows per forward")] = 4,
    cka_tokens: Annotated[int, typer.Option("--cka-tokens", callback=checked(V.CKA_TOKENS),
                                            help="tokens for linear CKA")] = 1024,
    worst: Annotated[int, typer.Option("--worst", callback=checked(V.WORST), help="tokens listed by loss increase")] = 20,
    dtype: Dtype = "auto",
    device: Device = "auto",
    out: Annotated[str | None, typer.Option("--out", help="output directory (default runs/compare/<student>-vs-<teacher>)")] = None,
    force: Force = False,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="draw figures at the end")] = True,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Download = False,
):
    """Teacher vs student on the same held-out windows: KL, top-1 agreement, loss increase, layer CKA."""
    from analysis.evaluation.compare import CompareConfig, run_compare, student_records

    teacher = teacher or student_records(student)["teacher"]
    if not teacher:
        raise MinitronError(f"{student} names no teacher (no prune_recipe.json); pass --teacher")
    given = {k: v for k, v in (("source", data), ("seq_len", seq_len), ("eval_samples", eval_samples),
                                ("seed", seed)) if v is not None}
    cfg = CompareConfig(
        teacher=_load(teacher, dtype, device, False, trust_remote_code, allow_pickle, download),
        student=_load(student, dtype, device, False, trust_remote_code, allow_pickle, download),
        baseline=_load(baseline, dtype, device, False, trust_remote_code, allow_pickle, download) if baseline else None,
        windows=given, batch_size=batch_size, cka_tokens=cka_tokens, worst=worst)
    run_dir = run_compare(cfg, out=out, force=force, console=_wide())
    if figures:
        from figures.render import draw_compare

        written = draw_compare(run_dir, force=force)
        say(f"figures: {len(written)} files in {Path(run_dir) / 'figures'}")
    say(f"results: {run_dir}")

@app.command(rich_help_panel="Report and publish")
def experiment(
    name: Annotated[str | None, typer.Argument(
        help="all, layer-drop, aggregation, pruning-axes, head-merge or distill-vs-finetune")] = None,
    seeds: Annotated[int | None, typer.Option("--seeds", callback=checked(V.SEEDS),
                                              help="window draws (and training orders); default 3")] = None,
    small: Annotated[bool, typer.Option("--small", help="CI scale: a ~5M-parameter cut of the default, seconds")] = False,
    estimate: Annotated[bool, typer.Option("--estimate", help="print the plan and its time estimate, run nothing")] = False,
    report: Annotated[bool, typer.Option("--report", help="regenerate the README's results section from --out")] = False,
    check: Annotated[bool, typer.Option("--check", help="with --report: exit 1 if the README is out of date")] = False,
    out: Annotated[str, typer.Option("--out", help="results directory (one JSON per experiment)")] = "notebooks/results",
    runs: Annotated[str, typer.Option("--runs", help="analysis runs, reused between calls")] = "notebooks/out/runs",
    readme: Annotated[str, typer.Option("--readme", help="the README whose results section --report writes")] = "README.md",
    force: Force = False,
):
    """Rerun the paper's experiments over seeds (results as JSON), or regenerate the README's results from them."""
    if report:
        from analysis.experiments.report import update_readme

        changed = update_readme(readme, out, check=check)
        if check and changed:
            say(f"{readme} is out of date with {out}: run python cli.py experiment --report")
            raise typer.Exit(1)
        say(f"{readme}: results section {'rewritten' if changed else 'already up to date'}")
        return
    from analysis.experiments.runner import EXPERIMENTS, resolve_names, run_experiments

    if name is None:
        raise MinitronError(f"name an experiment (all, {', '.join(EXPERIMENTS)}) or pass --report")
    from analysis.experiments.setup import scale

    sc = scale(small)
    names = resolve_names(name)
    for path in run_experiments(names, sc, sc.seeds if seeds is None else seeds, runs=runs, out=out, force=force,
                                console=console, estimate_only=estimate):
        print(path)
    if not estimate:
        say("README: python cli.py experiment --report")
