"""Teacher against student on the same held-out windows: what compression cost, and where.

Per token (``analysis.evaluation.loss.token_pair_stats``): KL(teacher || student), top-1 agreement and
both models' next-token loss; summarised as means with 95% intervals over windows
(``analysis.evaluation.intervals``), by position, and as the tokens whose loss rose most (decoded with
their context). Per layer: linear CKA (``analysis.evaluation.similarity``) between the teacher's and the
student's residual streams, every boundary against every boundary, and at matched depth (a depth-pruned
student's kept layers from its ``prune_recipe.json``).

Windows: by default exactly the student's own evaluation windows, by index, as its ``distill.json`` (else
its ``prune_recipe.json``) records them (``splits.evaluation``), after checking that the text still tokenizes
to the recorded stream; so the compared windows are never text the student was calibrated on, selected on
or trained on. A student without such a record, or explicit window settings, uses the selection split of
``analysis.data`` under those settings. CKA uses at most
``cka_tokens`` tokens drawn at random (seeded) from positions 1..T-1: the first position of a window
carries outsized activations in most LLMs and would dominate linear CKA.

A distilled student is compared together with the pruned model it started from (``distill.json`` names
it): the ``distillation`` section gives, per metric, distilled minus pruned-only with its paired interval.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from analysis.core import validate as V
from analysis.core.errors import MinitronError, one_line, warn
from analysis.core.io import read_json
from analysis.core.provenance import now, versions
from analysis.data import DataConfig, build_splits, check_context, read_stream, stream_sha256
from analysis.evaluation.divergence import (
    Side,
    cka_mask,
    cka_section,
    collect,
    distillation_effect,
    summarize,
    worst_tokens,
)
from analysis.evaluation.loss import PROTOCOL
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadConfig, LoadedModel, load_model

RESULT = "compare.json"
TOKENS = "tokens.safetensors"
RECIPE = "prune_recipe.json"  # written by analysis.pruning.export: the kept teacher layers
DISTILL = "distill.json"  # written by analysis.training.pipeline: the student it started from, its windows
WINDOW_KEYS = ("source", "seq_len", "eval_samples", "seed")
PROVENANCE = ("name", "ref", "kind", "weights_fingerprint", "params")  # of each model, in compare.json
SPLIT_META = ("eval_windows", "eval_sha256", "stream_tokens", "text_sha256")  # which windows, exactly
DEFAULT_WINDOWS = DataConfig(seq_len=128, calib_samples=0, eval_samples=8)  # when the student records none


@dataclass
class CompareConfig:
    """One ``compare`` job."""

    teacher: LoadConfig  # the reference model
    student: LoadConfig  # the compressed model
    baseline: LoadConfig | None = None  # a second student (default: the pruned model a distilled student began as)
    windows: dict = field(default_factory=dict)  # explicit source / seq_len / eval_samples / seed (see resolve_data)
    batch_size: int = 4  # windows per forward
    cka_tokens: int = 1024  # tokens for CKA (random positions 1..T-1)
    worst: int = 20  # tokens listed by loss increase
    context: int = 16  # tokens of context decoded before each listed token
    seed: int = 0  # CKA token draw and bootstrap
    iters: int = 2000  # bootstrap replicates of every interval

    def __post_init__(self):
        V.check_fields(self, {"batch_size": ("--batch-size", V.BATCH), "cka_tokens": ("--cka-tokens", V.CKA_TOKENS),
                              "worst": ("--worst", V.WORST), "context": ("context", V.WORST),
                              "seed": ("seed", V.SEED), "iters": ("iters", V.INTERVAL_ITERS)})
        unknown = set(self.windows) - set(WINDOW_KEYS)
        if unknown:
            raise MinitronError(f"unknown window settings {sorted(unknown)}; choose from {', '.join(WINDOW_KEYS)}")
        replace(DEFAULT_WINDOWS, **self.windows)  # --seq-len, --eval-samples, --seed: checked by DataConfig


# --- what the student's directory records -----------------------------------------------------------
def _read(model_ref: str, name: str) -> dict | None:
    path = Path(model_ref) / name
    if not path.is_file():
        return None
    what = {RECIPE: "pruning recipe", DISTILL: "distillation record"}.get(name, "record")
    doc = read_json(path, what)  # a damaged record is named, never skipped
    if not isinstance(doc, dict):
        raise MinitronError(f"{path}: corrupt {what}: not an object")
    return doc


def _evaluation_record(doc: dict) -> dict | None:
    """A result's evaluation windows (``splits`` as ``analysis.data.split_record`` writes it), if complete."""
    rec = doc.get("splits") or {}
    ev = rec.get("evaluation") or {}
    windows = ev.get("windows")
    if not (isinstance(windows, list) and windows and all(isinstance(w, int) for w in windows)
            and rec.get("stream_sha256") and isinstance(rec.get("seq_len"), int) and rec.get("source")):
        return None
    return {"source": rec["source"], "seq_len": rec["seq_len"], "seed": rec.get("seed", 0),
            "stream_sha256": rec["stream_sha256"], "windows": windows, "sha256": ev.get("sha256")}


def student_records(model_ref: str) -> dict:
    """What a student directory says about itself: kept layers, teacher, evaluation windows, starting model."""
    recipe, distill = _read(model_ref, RECIPE) or {}, _read(model_ref, DISTILL) or {}
    exact, origin = _evaluation_record(distill), "distill.json"
    if exact is None:
        exact, origin = _evaluation_record(recipe), "prune_recipe.json"
    if exact is not None:
        windows = {"source": exact["source"], "seq_len": exact["seq_len"], "seed": exact["seed"],
                   "eval_samples": len(exact["windows"])}
    else:  # a record without splits (written before evaluation splits existed): its settings, selection split
        windows, origin = (distill.get("data") or {}).get("config"), "distill.json"
        if not windows and recipe.get("ppl_data"):
            windows, origin = recipe["ppl_data"], "prune_recipe.json"
    start = (distill.get("student") or {}).get("ref")
    return {"kept_layers": recipe.get("kept_layers"), "teacher": recipe.get("teacher"),
            "windows": windows, "evaluation": exact, "windows_from": origin if windows else None,
            "started_from": start, "role": "distilled" if distill else "pruned" if recipe else "student"}


def resolve_data(cfg: CompareConfig, records: dict) -> tuple[DataConfig, str, list[int] | None]:
    """The compared windows: the student's recorded ones (else ``DEFAULT_WINDOWS``), with ``cfg.windows`` on top.

    Returns the data config, a sentence saying where it came from (warning when explicit settings leave
    the student's protocol: those windows may include text it was calibrated or trained on), and the
    student's evaluation windows by index (the first ``--eval-samples`` of them) when the protocol is kept
    and the student records them, else None (the selection split of the settings is used).
    """
    unknown = set(cfg.windows) - set(WINDOW_KEYS)
    if unknown:
        raise ValueError(f"unknown window settings {sorted(unknown)}")
    w = records.get("windows") or {}
    inherited = {k: w[k] for k in WINDOW_KEYS if k in w}
    data = replace(DEFAULT_WINDOWS, **{**inherited, **cfg.windows})
    if not inherited:
        return data, "the command's settings (the student records no held-out windows)", None
    leaves = (any(inherited.get(k) != v for k, v in cfg.windows.items() if k != "eval_samples")
              or data.eval_samples > inherited.get("eval_samples", 0))
    if leaves:
        return data, (f"the command's settings, which differ from the student's held-out windows "
                      f"({records['windows_from']}): some windows may be text it was calibrated or trained on"), None
    exact = records.get("evaluation")
    if exact is None:
        return data, (f"the student's held-out settings ({records['windows_from']}, which records no evaluation "
                      "windows)"), None
    return data, f"the student's evaluation windows ({records['windows_from']})", exact["windows"][:data.eval_samples]


def _cut(tokenizer, data: DataConfig, records: dict, windows: list[int] | None,
         max_positions: int | None) -> tuple[torch.Tensor, dict]:
    """Token ids (N, T) of the compared windows, and what ``compare.json`` records of them."""
    if windows is None:
        splits = build_splits(tokenizer, data, max_positions)
        return splits.eval, {"split": "selection split of the settings above",
                             **{k: splits.meta.get(k) for k in SPLIT_META}}
    check_context(data.seq_len, max_positions)
    stream, meta = read_stream(tokenizer, data)
    recorded, found = records["evaluation"]["stream_sha256"], stream_sha256(stream)
    if found != recorded:
        raise MinitronError(
            f"the text of '{data.source}' no longer tokenizes to the stream the student's {records['windows_from']} "
            f"recorded ({found} != {recorded}): its evaluation windows cannot be "
            "found; pass --data/--seq-len/--eval-samples to compare on other windows")
    T = data.seq_len
    ids = torch.stack([stream[w * T:(w + 1) * T] for w in windows])
    return ids, {"split": "evaluation (the student's own, by index)", "eval_windows": windows,
                 "eval_sha256": stream_sha256(ids), "stream_tokens": len(stream),
                 "text_sha256": meta.get("text_sha256")}


# --- the job ------------------------------------------------------------------------------------------
def label(ref: str) -> str:
    """A short name for a model reference: the registry name, else the directory (a distill run's ``model/``
    is named by its run folder)."""
    from analysis.models.registry import lookup

    spec = lookup(ref)
    if spec is not None:
        return spec.name
    path = Path(ref).expanduser()
    return f"{path.parent.name}-{path.stem}" if path.stem == "model" and path.parent.name else path.stem


def _baseline(cfg: CompareConfig, records: dict) -> LoadConfig | None:
    """The explicit baseline, else the pruned model a distilled student started from (when it still exists)."""
    if cfg.baseline is not None:
        return cfg.baseline
    start = records["started_from"]
    if records["role"] == "distilled" and start and (Path(start) / "config.json").is_file():
        return replace(cfg.student, model=start)
    return None


def _load_sides(cfg: CompareConfig, records: dict) -> tuple[LoadedModel, list[Side]]:
    teacher = load_model(cfg.teacher)
    sides = [Side("student", load_model(cfg.student), records)]
    base = _baseline(cfg, records)
    if base is not None:
        sides.append(Side("baseline", load_model(base), student_records(base.model)))
    for side in sides:
        if side.lm.model.config.vocab_size != teacher.model.config.vocab_size:
            raise MinitronError(f"{side.lm.name} has a vocabulary of {side.lm.model.config.vocab_size} tokens and "
                                f"{teacher.name} of {teacher.model.config.vocab_size}: they must share a tokenizer")
    return teacher, sides


def run_compare(cfg: CompareConfig, out: str | Path | None = None, force: bool = False, console=None) -> Path:
    """Compare, write ``compare.json`` + ``tokens.safetensors`` into the run directory, and return it.

    Default directory: ``runs/compare/<student>-vs-<teacher>/``. The output is checked before any work.
    """
    from safetensors.torch import save_file

    from analysis.core.io import check_output, finite_or_none, output_dir, write_json

    t0 = time.perf_counter()
    records = student_records(cfg.student.model)
    default = Path("runs") / "compare" / f"{label(cfg.student.model)}-vs-{label(cfg.teacher.model)}"
    run_dir = Path(out) if out else default
    check_output(run_dir, force)
    data, windows_from, windows = resolve_data(cfg, records)
    if "differ" in windows_from:
        warn(f"windows are {windows_from}")
    teacher, sides = _load_sides(cfg, records)
    tokenizer = teacher.tokenizer or sides[0].lm.tokenizer
    if tokenizer is None:
        raise MinitronError("neither the teacher nor the student has a tokenizer: the windows cannot be cut")
    models = [teacher.model] + [s.lm.model for s in sides]
    positions = [getattr(m.config, "max_position_embeddings", None) for m in models]
    ids, cut = _cut(tokenizer, data, records, windows, min((p for p in positions if p), default=None))
    t_load = time.perf_counter() - t0
    mask = cka_mask(ids.shape[0], ids.shape[1], cfg.cka_tokens, cfg.seed)
    t_states = collect(teacher, sides, ids, mask, cfg.batch_size)
    L_t = DecoderAdapter(teacher.model).num_layers
    stats = {side.label: side.tensors() for side in sides}
    teacher_nll = stats["student"]["t_nll"]
    doc = {"kind": "compare", "created": now(), "measured_by": "Minitron Lab (python cli.py compare)",
           "teacher": {k: teacher.provenance.get(k) for k in PROVENANCE},
           "students": {}, "distillation": None,
           "windows": {"from": windows_from, "data": asdict(data), **cut},
           "protocol": PROTOCOL + "; KL(teacher || student) and top-1 agreement at all T positions; intervals: "
                       "95% percentile bootstrap over windows (paired for differences)",
           "config": {k: v for k, v in asdict(cfg).items() if k not in ("teacher", "student", "baseline", "data")}}
    tensors = {"ids": ids, "teacher.nll": teacher_nll}
    for side in sides:
        t = stats[side.label]
        summary = {"label": label(side.lm.provenance["ref"])} | summarize(side, t, teacher_nll, cfg.iters, cfg.seed)
        summary["cka"], matrix = cka_section(t_states, side, L_t)
        summary["worst_tokens"] = worst_tokens(t, teacher_nll, ids, tokenizer, cfg.worst, cfg.context)
        doc["students"][side.label] = summary
        tensors |= {f"{side.label}.{k}": t[k].float() if k != "agree" else t[k].to(torch.uint8)
                    for k in ("kl", "agree", "s_nll")} | {f"{side.label}.cka": matrix}
    if "baseline" in stats:
        doc["distillation"] = distillation_effect(stats["baseline"], stats["student"], cfg.iters, cfg.seed)
    doc["versions"] = versions()
    doc["timings"] = {"load_s": t_load, "compare_s": time.perf_counter() - t0 - t_load,
                      "total_s": time.perf_counter() - t0}
    doc = finite_or_none(doc)  # an undefined ratio (no loss increase to share, a constant layer's CKA): null
    with output_dir(run_dir, "compare") as stage:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(stage / TOKENS))
        write_json(stage / RESULT, doc)
    if console:
        print_summary(doc, console)
    return run_dir


def print_summary(doc: dict, console) -> None:
    """One row per student: loss (teacher's), KL, top-1 agreement, matched CKA, concentration; then distillation."""
    from rich.table import Table

    def _cka_cell(cka: dict) -> str:
        if cka["matched_mean"] is None:
            return "-"
        robust = cka.get("without_massive") or {}
        if not robust.get("dropped") or robust.get("matched_mean") is None:
            return f"{cka['matched_mean']:.3f}"
        return f"{cka['matched_mean']:.3f} ({robust['matched_mean']:.3f} w/o {robust['dropped']} massive)"

    def fmt(iv: dict, digits: int = 3) -> str:
        return f"{iv['value']:.{digits}f} [{iv['lo']:.{digits}f}, {iv['hi']:.{digits}f}]"

    table = Table(title=f"compare with {doc['teacher']['name']} on {doc['windows']['data']['source']} "
                        f"({doc['windows']['data']['eval_samples']} x {doc['windows']['data']['seq_len']} tokens)")
    for col in ("student", "loss (teacher)", "loss increase", "KL(t||s)", "top-1 agreement", "CKA matched",
                "top 10% tokens"):
        table.add_column(col, justify="left" if col == "student" else "right")
    for s in doc["students"].values():
        conc = s["concentration"].get("top_0.1")
        table.add_row(f"{s['label']} ({s['role']})", f"{s['loss']['value']:.3f} ({s['teacher_loss']['value']:.3f})",
                      fmt(s["loss_increase"]), fmt(s["kl"]), fmt(s["top1_agreement"]),
                      _cka_cell(s["cka"]),
                      f"{conc:.0%} of the increase" if conc is not None else "-")
    console.print(table)
    if doc["distillation"]:
        d = doc["distillation"]
        console.print("distillation (distilled − pruned-only, 95% interval over windows): " + ", ".join(
            f"{k} {v['value']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}]"
            + ("" if v["direction"] != "none" else " (no direction)")
            for k, v in d.items()))


@dataclass
class CompareResult:
    """A compare run read back: the summary document and the per-token tensors."""

    path: Path
    doc: dict
    tensors: dict[str, torch.Tensor]

    @property
    def sides(self) -> list[str]:
        return list(self.doc["students"])


def load_compare(path: str | Path) -> CompareResult:
    """Read a directory written by ``run_compare``."""
    from safetensors.torch import load_file

    path = Path(path)
    from safetensors import SafetensorError

    if not (path / RESULT).is_file() or not (path / TOKENS).is_file():
        raise MinitronError(f"{path}: not a compare run (needs {RESULT} and {TOKENS})")
    doc = read_json(path / RESULT, "compare record")
    if not isinstance(doc, dict) or not isinstance(doc.get("students"), dict) or not doc["students"]:
        raise MinitronError(f"{path / RESULT}: corrupt compare record: no 'students' section")
    try:
        tensors = load_file(str(path / TOKENS))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise MinitronError(f"{path / TOKENS}: corrupt compare tensors ({one_line(exc)})") from None
    missing = [k for k in ("ids", "teacher.nll", *(f"{s}.{t}" for s in doc["students"] for t in ("kl", "cka")))
               if k not in tensors]
    if missing:
        raise MinitronError(f"{path / TOKENS}: corrupt compare tensors: no {', '.join(missing)}")
    return CompareResult(path, doc, tensors)
