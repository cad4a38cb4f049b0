"""Teacher against student on the same held-out windows: what compression cost, and where.

Per token (``analysis.evaluation.loss.token_pair_stats``): KL(teacher || student), top-1 agreement and
both models' next-token loss; summarised as means with 95% intervals over windows
(``analysis.evaluation.intervals``), by position, and as the tokens whose loss rose most (decoded with
their context). Per layer: linear CKA (``analysis.evaluation.similarity``) between the teacher's and the
student's residual streams, every boundary against every boundary, and at matched depth (a depth-pruned
student's kept layers from its ``prune_recipe.json``).

Windows: the held-out split of ``analysis.data``. By default the student's own held-out protocol is
used (source, window length, count and seed from its ``distill.json``, else its ``prune_recipe.json``),
so the compared windows are never text the student was calibrated or trained on. CKA uses at most
``cka_tokens`` tokens drawn at random (seeded) from positions 1..T-1: the first position of a window
carries outsized activations in most LLMs and would dominate linear CKA.

A distilled student is compared together with the pruned model it started from (``distill.json`` names
it): the ``distillation`` section gives, per metric, distilled minus pruned-only with its paired interval.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from analysis.core.errors import MinitronError
from analysis.core.provenance import now, versions
from analysis.data import DataConfig, build_splits
from analysis.evaluation.intervals import paired_difference, ratio_interval
from analysis.evaluation.loss import PROTOCOL, token_pair_stats
from analysis.evaluation.similarity import centered_gram, cka_matrix, matched_layers
from analysis.models.adapter import DecoderAdapter
from analysis.models.loading import LoadConfig, LoadedModel, load_model

RESULT = "compare.json"
TOKENS = "tokens.safetensors"
RECIPE = "prune_recipe.json"  # written by analysis.pruning.export: the kept teacher layers
DISTILL = "distill.json"  # written by analysis.training.pipeline: the student it started from, its windows
WINDOW_KEYS = ("source", "seq_len", "eval_samples", "seed")
DEFAULT_WINDOWS = DataConfig(seq_len=128, calib_samples=0, eval_samples=8)  # when the student records none
TOP_SHARES = (0.01, 0.1)  # concentration: share of the loss increase carried by the top 1% and 10% of tokens


@dataclass
class CompareConfig:
    """One ``compare`` job."""

    teacher: LoadConfig  # the reference model
    student: LoadConfig  # the compressed model
    baseline: LoadConfig | None = None  # a second student (default: the pruned model a distilled student began as)
    windows: dict = field(default_factory=dict)  # explicit source / seq_len / eval_samples / seed (rest: see resolve_data)
    batch_size: int = 4  # windows per forward
    cka_tokens: int = 1024  # tokens for CKA (random positions 1..T-1)
    worst: int = 20  # tokens listed by loss increase
    context: int = 16  # tokens of context decoded before each listed token
    seed: int = 0  # CKA token draw and bootstrap
    iters: int = 2000  # bootstrap replicates of every interval


# --- what the student's directory records -----------------------------------------------------------
def _read(model_ref: str, name: str) -> dict | None:
    path = Path(model_ref) / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise MinitronError(f"{path}: not valid JSON") from None


def student_records(model_ref: str) -> dict:
    """What a student directory says about itself: kept layers, teacher, held-out windows, starting model."""
    recipe, distill = _read(model_ref, RECIPE) or {}, _read(model_ref, DISTILL) or {}
    windows = (distill.get("data") or {}).get("config")
    origin = "distill.json"
    if not windows and recipe.get("ppl_data"):
        windows, origin = recipe["ppl_data"], "prune_recipe.json"
    start = (distill.get("student") or {}).get("ref")
    return {"kept_layers": recipe.get("kept_layers"), "teacher": recipe.get("teacher"),
            "windows": windows, "windows_from": origin if windows else None,
            "started_from": start, "role": "distilled" if distill else "pruned" if recipe else "student"}


def resolve_data(cfg: CompareConfig, records: dict) -> tuple[DataConfig, str]:
    """The held-out windows: the student's recorded ones (else ``DEFAULT_WINDOWS``), with ``cfg.windows`` on top.

    Returns the data config and a sentence saying where it came from, warning when explicit settings
    leave the student's held-out protocol (those windows may include text it was calibrated or trained on).
    """
    unknown = set(cfg.windows) - set(WINDOW_KEYS)
    if unknown:
        raise ValueError(f"unknown window settings {sorted(unknown)}")
    w = records.get("windows") or {}
    inherited = {k: w[k] for k in WINDOW_KEYS if k in w}
    data = replace(DEFAULT_WINDOWS, **{**inherited, **cfg.windows})
    if not inherited:
        return data, "the command's settings (the student records no held-out windows)"
    if any(inherited.get(k) != v for k, v in cfg.windows.items()) and not (
            set(cfg.windows) == {"eval_samples"} and cfg.windows["eval_samples"] <= inherited.get("eval_samples", 0)):
        return data, (f"the command's settings, which differ from the student's held-out windows "
                      f"({records['windows_from']}): some windows may be text it was calibrated or trained on")
    return data, f"the student's held-out windows ({records['windows_from']})"


# --- one forward with the residual stream captured ----------------------------------------------------
@contextlib.contextmanager
def residuals(ad: DecoderAdapter, store: list[list[torch.Tensor]], mask: torch.Tensor) -> Iterator[None]:
    """Append x[mask] (k, D) of every layer boundary j = 0..L to ``store[j]`` during one forward; hooks removed after."""
    def take(j):
        def hook(module, args, kwargs, out=None):
            x = (out[0] if isinstance(out, tuple) else out) if out is not None else \
                (args[0] if args else kwargs["hidden_states"])
            store[j].append(x[mask.to(x.device)].float().cpu())
        return hook

    handles = [layer.register_forward_pre_hook(take(j), with_kwargs=True) for j, layer in enumerate(ad.layers)]
    handles.append(ad.layers[-1].register_forward_hook(take(ad.num_layers), with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def cka_mask(n: int, t: int, tokens: int, seed: int) -> torch.Tensor:
    """(n, t) bool: ``tokens`` positions drawn without replacement from positions 1..t-1 of every window."""
    g = torch.Generator().manual_seed(seed)
    pool = n * (t - 1)
    pick = torch.randperm(pool, generator=g)[:min(tokens, pool)]
    mask = torch.zeros(n, t, dtype=torch.bool)
    mask[pick // (t - 1), pick % (t - 1) + 1] = True
    return mask


@dataclass
class Side:
    """One student's per-token statistics and residual states over all windows."""

    label: str
    lm: LoadedModel
    records: dict
    stats: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    states: list[list[torch.Tensor]] = field(default_factory=list)

    def add(self, stats: dict) -> None:
        for k, v in stats.items():
            self.stats.setdefault(k, []).append(v.cpu())

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.cat(v) for k, v in self.stats.items()}


@torch.no_grad()
def collect(teacher: LoadedModel, sides: list[Side], ids: torch.Tensor, mask: torch.Tensor, batch_size: int):
    """Teacher states, and each side's token statistics and states, window batch by window batch."""
    t_ad = DecoderAdapter(teacher.model)
    t_states = [[] for _ in range(t_ad.num_layers + 1)]
    for side in sides:
        side.states = [[] for _ in range(DecoderAdapter(side.lm.model).num_layers + 1)]
    t_dev = next(teacher.model.parameters()).device
    for s in tqdm(range(0, ids.shape[0], batch_size), desc="compare", unit="batch"):
        batch, m = ids[s:s + batch_size], mask[s:s + batch_size]
        with residuals(t_ad, t_states, m):
            t_normed = t_ad.backbone(input_ids=batch.to(t_dev), use_cache=False).last_hidden_state
        for side in sides:
            ad = DecoderAdapter(side.lm.model)
            with residuals(ad, side.states, m):
                s_normed = ad.backbone(input_ids=batch.to(next(side.lm.model.parameters()).device),
                                       use_cache=False).last_hidden_state
            side.add(token_pair_stats(ad, s_normed, t_ad, t_normed, batch.to(s_normed.device)))
    return [torch.cat(s) for s in t_states]


# --- summaries ----------------------------------------------------------------------------------------
def concentration(delta: torch.Tensor) -> dict:
    """How concentrated a loss increase is: share of Σ Δ carried by the top 1% / 10% of tokens by Δ."""
    d = delta.double().flatten().sort(descending=True).values
    total = float(d.sum())
    out = {"total_increase": total, "tokens_worse": float((d > 0).double().mean())}
    for share in TOP_SHARES:
        k = max(1, round(share * d.numel()))
        out[f"top_{share:g}"] = float(d[:k].sum()) / total if total > 0 else None
    return out


def worst_tokens(t: dict, teacher_nll: torch.Tensor, ids: torch.Tensor, tokenizer, k: int, context: int) -> list[dict]:
    """The ``k`` tokens whose loss rose most, with the text before them and both models' guesses."""
    delta = t["s_nll"] - teacher_nll  # (N, T-1): position p scores token p+1
    order = delta.flatten().argsort(descending=True)[:k]
    rows, T1 = [], delta.shape[1]
    dec = (lambda x: tokenizer.decode(x)) if tokenizer is not None else (lambda x: str(list(x)))
    for flat in order.tolist():
        w, p = divmod(flat, T1)
        rows.append({
            "window": w, "position": p + 1, "delta_nll": float(delta[w, p]),
            "context": dec(ids[w, max(0, p + 1 - context):p + 1].tolist()), "token": dec([int(ids[w, p + 1])]),
            "teacher_p": float(torch.exp(-teacher_nll[w, p])), "student_p": float(torch.exp(-t["s_nll"][w, p])),
            "teacher_top": dec([int(t["t_top"][w, p])]), "student_top": dec([int(t["s_top"][w, p])]),
        })
    return rows


def summarize(side: Side, t: dict, teacher_nll: torch.Tensor, cfg: CompareConfig) -> dict:
    """Means with 95% intervals over windows, by-position curves and the loss-increase concentration."""
    N, T = t["kl"].shape
    per_window = torch.full((N,), float(T), dtype=torch.float64)
    scored = torch.full((N,), float(T - 1), dtype=torch.float64)
    s_sum, t_sum = t["s_nll"].double().sum(1), teacher_nll.double().sum(1)
    ci = {"iters": cfg.iters, "seed": cfg.seed}
    return {
        "model": {k: side.lm.provenance.get(k) for k in ("name", "ref", "kind", "weights_fingerprint", "params")},
        "role": side.records["role"], "kept_layers": side.records["kept_layers"],
        "loss": ratio_interval(s_sum, scored, **ci).to_json(),
        "teacher_loss": ratio_interval(t_sum, scored, **ci).to_json(),
        "loss_increase": paired_difference(t_sum, s_sum, scored, **ci).to_json(),
        "kl": ratio_interval(t["kl"].double().sum(1), per_window, **ci).to_json(),
        "top1_agreement": ratio_interval(t["agree"].double().sum(1), per_window, **ci).to_json(),
        "concentration": concentration(t["s_nll"] - teacher_nll),
        "by_position": {"kl": t["kl"].double().mean(0).tolist(),
                        "agreement": t["agree"].double().mean(0).tolist(),
                        "loss_increase": (t["s_nll"] - teacher_nll).double().mean(0).tolist()},
        "tokens": {"windows": N, "positions": T, "kl_positions": N * T, "scored": N * (T - 1)},
    }


def cka_section(teacher_states: list[torch.Tensor], side: Side, teacher_layers: int) -> tuple[dict, torch.Tensor]:
    """CKA of every (student boundary, teacher boundary) pair and at matched depth."""
    grams_t = torch.stack([centered_gram(x) for x in teacher_states])
    grams_s = torch.stack([centered_gram(torch.cat(x)) for x in side.states])
    matrix = cka_matrix(grams_s, grams_t)  # (Ls+1, Lt+1)
    kept, Ls = side.records["kept_layers"], len(side.states) - 1
    if kept is None and Ls != teacher_layers:
        pairs, how = [], "none: the depths differ and the student has no prune_recipe.json with kept_layers"
    else:
        pairs = matched_layers(teacher_layers, kept)
        how = "kept_layers of prune_recipe.json" if kept is not None else "same depth: boundary j to boundary j"
    matched = [float(matrix[s, t]) for s, t in pairs]
    return {"tokens": int(grams_t.shape[1]), "matching": how, "pairs": pairs, "matched": matched,
            "matched_mean": sum(matched) / len(matched) if matched else None}, matrix.float()


def distillation_effect(base: dict, dist: dict, cfg: CompareConfig) -> dict:
    """Distilled minus pruned-only, paired over the same windows, for KL, agreement and loss."""
    N, T = dist["kl"].shape
    ci = {"iters": cfg.iters, "seed": cfg.seed}
    per_window = torch.full((N,), float(T), dtype=torch.float64)
    scored = torch.full((N,), float(T - 1), dtype=torch.float64)
    return {"kl": paired_difference(base["kl"].double().sum(1), dist["kl"].double().sum(1), per_window, **ci).to_json(),
            "top1_agreement": paired_difference(base["agree"].double().sum(1), dist["agree"].double().sum(1),
                                                per_window, **ci).to_json(),
            "loss": paired_difference(base["s_nll"].double().sum(1), dist["s_nll"].double().sum(1), scored,
                                      **ci).to_json()}


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

    from analysis.core.io import check_output, output_dir, write_json

    t0 = time.perf_counter()
    records = student_records(cfg.student.model)
    run_dir = Path(out) if out else Path("runs") / "compare" / f"{label(cfg.student.model)}-vs-{label(cfg.teacher.model)}"
    check_output(run_dir, force)
    data, windows_from = resolve_data(cfg, records)
    if console and "differ" in windows_from:
        console.print(f"warning: windows are {windows_from}")
    teacher, sides = _load_sides(cfg, records)
    tokenizer = teacher.tokenizer or sides[0].lm.tokenizer
    if tokenizer is None:
        raise MinitronError("neither the teacher nor the student has a tokenizer: the windows cannot be cut")
    positions = [getattr(m.config, "max_position_embeddings", None) for m in [teacher.model] + [s.lm.model for s in sides]]
    splits = build_splits(tokenizer, data, min((p for p in positions if p), default=None))
    ids = splits.eval
    t_load = time.perf_counter() - t0
    mask = cka_mask(ids.shape[0], ids.shape[1], cfg.cka_tokens, cfg.seed)
    t_states = collect(teacher, sides, ids, mask, cfg.batch_size)
    L_t = DecoderAdapter(teacher.model).num_layers
    stats = {side.label: side.tensors() for side in sides}
    teacher_nll = stats["student"]["t_nll"]
    doc = {"kind": "compare", "created": now(), "measured_by": "Minitron Lab (python cli.py compare)",
           "teacher": {k: teacher.provenance.get(k) for k in ("name", "ref", "kind", "weights_fingerprint", "params")},
           "students": {}, "distillation": None,
           "windows": {"from": windows_from, "data": asdict(data), "split": "eval (held-out)",
                       **{k: splits.meta.get(k) for k in ("eval_windows", "eval_sha256", "stream_tokens", "text_sha256")}},
           "protocol": PROTOCOL + "; KL(teacher || student) and top-1 agreement at all T positions; intervals: "
                       "95% percentile bootstrap over windows (paired for differences)",
           "config": {k: v for k, v in asdict(cfg).items() if k not in ("teacher", "student", "baseline", "data")}}
    tensors = {"ids": ids, "teacher.nll": teacher_nll}
    for side in sides:
        t = stats[side.label]
        summary = summarize(side, t, teacher_nll, cfg)
        summary["cka"], matrix = cka_section(t_states, side, L_t)
        summary["worst_tokens"] = worst_tokens(t, teacher_nll, ids, tokenizer, cfg.worst, cfg.context)
        doc["students"][side.label] = summary
        tensors |= {f"{side.label}.{k}": t[k].float() if k != "agree" else t[k].to(torch.uint8)
                    for k in ("kl", "agree", "s_nll")} | {f"{side.label}.cka": matrix}
    if "baseline" in stats:
        doc["distillation"] = distillation_effect(stats["baseline"], stats["student"], cfg)
    doc["versions"] = versions()
    doc["timings"] = {"load_s": t_load, "compare_s": time.perf_counter() - t0 - t_load,
                      "total_s": time.perf_counter() - t0}
    with output_dir(run_dir, "compare") as stage:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(stage / TOKENS))
        write_json(stage / RESULT, doc)
    if console:
        print_summary(doc, console)
    return run_dir


def print_summary(doc: dict, console) -> None:
    """One row per student: loss (teacher's), KL, top-1 agreement, matched CKA, concentration; then distillation."""
    from rich.table import Table

    def fmt(iv: dict, digits: int = 3) -> str:
        return f"{iv['value']:.{digits}f} [{iv['lo']:.{digits}f}, {iv['hi']:.{digits}f}]"

    table = Table(title=f"compare with {doc['teacher']['name']} on {doc['windows']['data']['source']} "
                        f"({doc['windows']['data']['eval_samples']} x {doc['windows']['data']['seq_len']} tokens)")
    for col in ("student", "loss (teacher)", "loss increase", "KL(t||s)", "top-1 agreement", "CKA matched",
                "top 10% tokens"):
        table.add_column(col, justify="left" if col == "student" else "right")
    for s in doc["students"].values():
        conc = s["concentration"].get("top_0.1")
        table.add_row(f"{s['model']['name']} ({s['role']})", f"{s['loss']['value']:.3f} ({s['teacher_loss']['value']:.3f})",
                      fmt(s["loss_increase"]), fmt(s["kl"]), fmt(s["top1_agreement"]),
                      f"{s['cka']['matched_mean']:.3f}" if s["cka"]["matched_mean"] is not None else "-",
                      f"{conc:.0%} of the increase" if conc is not None else "-")
    console.print(table)
    if doc["distillation"]:
        d = doc["distillation"]
        console.print("distillation (distilled − pruned-only, 95% interval over windows): " + ", ".join(
            f"{k} {v['value']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}]" + ("" if v["direction"] != "none" else " (no direction)")
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
    if not (path / RESULT).is_file() or not (path / TOKENS).is_file():
        raise MinitronError(f"{path}: not a compare run (needs {RESULT} and {TOKENS})")
    return CompareResult(path, json.loads((path / RESULT).read_text()), load_file(str(path / TOKENS)))
