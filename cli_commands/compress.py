"""Commands that make a smaller model: prune, search (the paper's architecture search), distill."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from analysis.core import validate as V
from analysis.core.errors import MinitronError
from cli_commands.options import (
    DTYPES,
    MODEL_HELP,
    Aggregation,
    AllowPickle,
    Data,
    DepthMetric,
    Device,
    Download,
    Dtype,
    Force,
    HeadMerge,
    Model,
    Seed,
    SeqLen,
    TrustRemoteCode,
    _choice,
    _load,
    _wide,
    _write_card,
    app,
    checked,
    console,
    say,
)


@app.command(rich_help_panel="Compress it")
def prune(
    out: Annotated[str, typer.Option("--out", help="output model directory")],
    model: Model = "smollm2-135m",
    run: Annotated[str | None, typer.Option("--run", help="analysis run directory (default: analyse on the fly)")] = None,
    target: Annotated[str | None, typer.Option("--target", help="take the shape of a registry model (8B, 4B)")] = None,
    hidden: Annotated[int | None, typer.Option("--hidden", callback=checked(V.WIDTH),
                                               help="embedding channels to keep")] = None,
    ffn: Annotated[int | None, typer.Option("--ffn", callback=checked(V.WIDTH), help="MLP neurons to keep per layer")] = None,
    heads: Annotated[int | None, typer.Option("--heads", callback=checked(V.WIDTH),
                                              help="query heads to keep per layer (multiple of kv heads)")] = None,
    layers: Annotated[int | None, typer.Option("--layers", callback=checked(V.WIDTH), help="decoder layers to keep")] = None,
    depth_metric: DepthMetric = "bi",
    aggregation: Aggregation = "l2_mean",
    head_merge: HeadMerge = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="write config.json only and print the parameter count")] = False,
    data: Annotated[str, typer.Option("--data", help="text for on-the-fly analysis and perplexity")] = "pydoc",
    samples: Annotated[int, typer.Option("--samples", callback=checked(V.SAMPLES),
                                         help="calibration samples (on-the-fly analysis)")] = 32,
    select_samples: Annotated[int, typer.Option("--select-samples", callback=checked(V.SAMPLES),
                                                help="selection samples: drop-layer losses of the on-the-fly "
                                                "analysis")] = 8,
    eval_samples: Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                              help="evaluation samples for perplexity (disjoint from the "
                                              "analysis's)")] = 8,
    seq_len: SeqLen = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH), help="samples per forward")] = 8,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="zero-shot perplexity before and after")] = True,
    dtype: Dtype = "auto",
    device: Device = "auto",
    random_init: Annotated[bool, typer.Option("--random-init", help="random teacher weights (shape/speed work)")] = False,
    seed: Seed = 0,
    force: Force = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Download = False,
):
    """Minitron-style structured pruning into a plain Hugging Face model directory."""
    from analysis.core.io import check_output
    from analysis.data import DataConfig
    from analysis.pruning.export import export_config, export_model
    from analysis.pruning.pipeline import PruneConfig
    from analysis.pruning.pipeline import dry_run as shapes_only
    from analysis.pruning.pipeline import prune as run_prune
    from analysis.pruning.plan import PruneTarget

    sizes = PruneTarget(hidden=hidden, ffn=ffn, heads=heads, layers=layers)
    if target is None and sizes == PruneTarget():
        raise MinitronError("nothing to prune: pass --target 8B|4B or at least one of --hidden, --ffn, --heads, --layers")
    check_output(out, force)  # before any work
    cfg = PruneConfig(
        load=_load(model, dtype, device, random_init, trust_remote_code, allow_pickle, download, seed=seed),
        target=sizes, target_name=target, run=run, depth_metric=depth_metric, aggregation=aggregation,
        evaluate=evaluate, batch_size=batch_size, head_merge=head_merge,
        data=DataConfig(source=data, seq_len=seq_len, calib_samples=samples, eval_samples=select_samples,
                        test_samples=eval_samples, seed=seed, download=download),
    )
    if dry_run:
        config, recipe = shapes_only(cfg)
        export_config(config, out, recipe, force=force)
    else:
        pruned, tokenizer, recipe = run_prune(cfg, console=console)
        export_model(pruned, tokenizer, out, recipe, force=force, finalize=_write_card)
    t = recipe["target"]
    say(f"{recipe['teacher']} ({recipe['teacher_params'] / 1e9:.3f}B) -> hidden {t['hidden']}, "
        f"ffn {t['ffn']}, heads {t['heads']}, layers {t['layers']}")
    print(f"params: {recipe['params']} ({recipe['params'] / 1e9:.3f}B)")
    if recipe["ppl_before"] is not None:
        print(f"perplexity: {recipe['ppl_before']:.3f} -> {recipe['ppl_after']:.3f}")
    say(f"written: {out}")


@app.command(rich_help_panel="Compress it")
def search(
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = "15B",
    params: Annotated[str, typer.Option(
        "--params", help="8B or 4B (the paper's problems, scaled to the teacher) or a parameter count (7.5e9)")] = "8B",
    tolerance: Annotated[float | None, typer.Option(
        "--tolerance", callback=checked(V.TOLERANCE),
        help="keep |params - budget| <= t x budget (default: 8B the paper's own list, else 0.05)")] = None,
    rank_: Annotated[bool, typer.Option("--rank", help="prune, retrain and rank every candidate (needs weights, --run)")] = False,
    run: Annotated[str | None, typer.Option("--run", help="analysis run of the teacher, for --rank")] = None,
    retrain_steps: Annotated[int, typer.Option(
        "--retrain-steps", callback=checked(V.TRAIN_STEPS),
        help="distillation steps per candidate before ranking (paper: ~400); 0: zero-shot order")] = 20,
    aggregation: Aggregation = "l2_mean",
    depth_metric: DepthMetric = "bi",
    head_merge: HeadMerge = True,
    data: Data = "pydoc",
    eval_samples: Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                              help="held-out windows the ranking scores")] = 8,
    seq_len: SeqLen = 128,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH),
                                            help="windows per training step and evaluation batch")] = 2,
    lr: Annotated[float, typer.Option("--lr", callback=checked(V.LR),
                                      help="peak learning rate of the retraining (cosine to lr/10)")] = 1e-4,
    seed: Seed = 0,
    out: Annotated[str | None, typer.Option("--out", help="write search.json (candidates, ranking, provenance) here")] = None,
    force: Force = False,
    dtype: Dtype = "auto",
    device: Device = "auto",
):
    """Candidate architectures of the paper's search space within a parameter budget, optionally ranked."""
    from analysis.core.io import check_output, output_dir, write_json
    from analysis.data import DataConfig
    from analysis.training.loop import DistillConfig
    from analysis.training.search import SearchJob, run_search

    if out:
        check_output(out, force)  # before any work
    train = DistillConfig(steps=retrain_steps, seq_len=seq_len, batch_size=batch_size, lr=lr, min_lr=lr / 10,
                          warmup_steps=max(1, retrain_steps // 10), eval_every=0, eval_samples=eval_samples,
                          checkpoint_every=0, device=device, dtype=dtype)
    job = SearchJob(load=_load(model, dtype, device), params=params, tolerance=tolerance, rank=rank_, run=run,
                    aggregation=aggregation, depth_metric=depth_metric, head_merge=head_merge, train=train,
                    data=DataConfig(source=data, seed=seed))
    doc = run_search(job, log=say)
    _print_candidates(doc)
    if out:
        with output_dir(out, "search") as tmp:
            write_json(tmp / "search.json", doc)
        say(f"written: {Path(out) / 'search.json'}")


def _print_candidates(doc: dict) -> None:
    space, ranking = doc["space"], doc["ranking"]
    rows = doc["candidates"]
    budget = space["budget"]
    low, high = space["window"]
    table = Table(title=f"{doc['teacher']}, {doc['params']}: budget {_count(budget)}, params in "
                        f"{_count(low)}..{_count(high)}\n{space['rule']}")
    cols = ["#", "layers", "heads", "MLP factor", "hidden", "MLP", "params", "vs budget"]
    order = list(range(len(rows)))
    if ranking:
        key = ranking["order_by"]
        order.sort(key=lambda i: (ranking["rows"][i][key] is None, ranking["rows"][i][key] or 0.0))  # diverged last
        cols += ["zero-shot loss"] + (["retrained loss", "zero-shot rank"] if ranking["retrain"] else [])
        zs = {i: ranking["rows"][i]["zero_shot_loss"] for i in order}
        zs_rank = {i: r for r, i in enumerate(sorted(order, key=lambda i: (zs[i] is None, zs[i] or 0.0)), 1)}
    for col in cols:
        table.add_column(col, justify="right")
    for n, i in enumerate(order, 1):
        c = rows[i]
        cells = [str(n), str(c["layers"]), str(c["heads"]), f"{c['mlp_factor']:g}", str(c["hidden"]), str(c["mlp"]),
                 _count(c["params"]), f"{c['vs_budget']:+.1%}"]
        if ranking:
            r = ranking["rows"][i]
            cells.append(_loss(r["zero_shot_loss"]))
            if ranking["retrain"]:
                cells += [_loss(r["retrained_loss"]), str(zs_rank[i])]
        table.add_row(*cells)
    _wide().print(table)
    a = (ranking or {}).get("agreement")
    if a and None not in (a["spearman"], a["kendall"], *a["spearman_ci95"], *a["kendall_ci95"]):  # tied: undefined
        print(f"zero-shot vs retrained order: Spearman {a['spearman']:+.2f} [{a['spearman_ci95'][0]:+.2f}, "
              f"{a['spearman_ci95'][1]:+.2f}], Kendall {a['kendall']:+.2f} [{a['kendall_ci95'][0]:+.2f}, "
              f"{a['kendall_ci95'][1]:+.2f}] (95% bootstrap over candidates); the retrained best ranked "
              f"{a['retrained_best_zero_shot_rank']} zero-shot")
    print(f"{len(rows)} candidates")


def _loss(value: float | None) -> str:
    return "diverged" if value is None else f"{value:.4f}"


def _count(n: float) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


@app.command(rich_help_panel="Compress it")
def distill(
    student: Annotated[str, typer.Option("--student", "-s", help="the model to train, usually a pruned directory")],
    teacher: Annotated[str, typer.Option("--teacher", "-t", help=MODEL_HELP)] = "smollm2-135m",
    data: Data = "pydoc",
    steps: Annotated[int, typer.Option("--steps", callback=checked(V.STEPS), help="optimizer steps")] = 100,
    seq_len: SeqLen = 256,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=checked(V.BATCH), help="windows per micro-batch")] = 4,
    grad_accum: Annotated[int, typer.Option("--grad-accum", callback=checked(V.ACCUM),
                                            help="micro-batches per optimizer step")] = 1,
    lr: Annotated[float, typer.Option("--lr", callback=checked(V.LR), help="peak learning rate")] = 1e-4,
    min_lr: Annotated[float, typer.Option("--min-lr", callback=checked(V.MIN_LR), help="end of the cosine decay")] = 1e-5,
    warmup: Annotated[int, typer.Option("--warmup", callback=checked(V.WARMUP), help="linear warmup steps")] = 10,
    kd_weight: Annotated[float, typer.Option("--kd-weight", callback=checked(V.LOSS_WEIGHT),
                                             help="weight of KL(teacher || student)")] = 1.0,
    clm_weight: Annotated[float, typer.Option("--clm-weight", callback=checked(V.LOSS_WEIGHT),
                                              help="weight of next-token cross-entropy")] = 0.0,
    finetune: Annotated[bool, typer.Option("--finetune", help="plain CLM fine-tuning (kd 0, clm 1)")] = False,
    eval_every: Annotated[int, typer.Option("--eval-every", callback=checked(V.EVERY),
                                            help="held-out evaluation every N steps (0: ends)")] = 20,
    eval_samples: Annotated[int, typer.Option("--eval-samples", callback=checked(V.SAMPLES),
                                              help="held-out windows (the evaluation split, never trained on)")] = 8,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", callback=checked(V.EVERY),
                                                  help="checkpoint every N steps (and at least every ~30 s)")] = 50,
    seed: Annotated[int, typer.Option("--seed", callback=checked(V.SEED), help="order of training windows")] = 0,
    data_seed: Annotated[int, typer.Option("--data-seed", callback=checked(V.SEED),
                                           help="window permutation, as analyze --seed")] = 0,
    dtype: Annotated[str, typer.Option("--dtype", callback=_choice(*DTYPES),
                                       help="compute dtype (the student stays float32)")] = "auto",
    device: Device = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run in --out")] = False,
    out: Annotated[str | None, typer.Option("--out", help="output directory (default runs/distill/<student>-<mode>)")] = None,
    force: Force = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_pickle: AllowPickle = False,
    download: Download = False,
):
    """Heal a pruned student by logit distillation from its teacher (or plain fine-tuning, --finetune)."""
    from analysis.data import DataConfig
    from analysis.training.loop import DistillConfig
    from analysis.training.pipeline import DistillJob, run_distill

    train = DistillConfig(steps=steps, seq_len=seq_len, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                          min_lr=min_lr, warmup_steps=warmup, kd_weight=kd_weight, clm_weight=clm_weight,
                          eval_every=eval_every, eval_samples=eval_samples, checkpoint_every=checkpoint_every,
                          seed=seed, device=device, dtype=dtype)
    job = DistillJob(student=_load(student, "float32", device, False, trust_remote_code, allow_pickle, download),
                     teacher=_load(teacher, dtype, device, False, trust_remote_code, allow_pickle, download),
                     data=DataConfig(source=data, seed=data_seed, download=download), train=train.finetune() if finetune else train,
                     out=Path(out) if out else None, resume=resume, force=force)
    result = run_distill(job, console=console, finalize=_write_card)
    before, after = result.final["before"], result.final["after"]
    say(f"held-out loss {before['loss']:.4f} -> {after['loss']:.4f} (ppl {before['ppl']:.2f} -> "
        f"{after['ppl']:.2f}), KL {before['kl']:.4f} -> {after['kl']:.4f}; teacher loss {after['teacher_loss']:.4f}")
    say(f"model: {result.model_dir}")
