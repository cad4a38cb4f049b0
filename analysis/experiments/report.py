"""The README's results section, generated from the committed experiment files.

    python cli.py experiment --report           # rewrite the section between the markers in README.md
    python cli.py experiment --report --check   # exit 1 if README.md and notebooks/results/ disagree

Every number in the section is read from ``notebooks/results/<experiment>.json`` through
``analysis.experiments.summary``; every direction it states comes from an interval that excludes
zero there. Paper numbers appear only in columns that name the paper's table.
"""

from __future__ import annotations

from pathlib import Path

from analysis.core.errors import MinitronError, one_line
from analysis.core.io import read_json, write_text
from analysis.experiments.stats import Interval, fmt
from analysis.experiments.summary import summarize
from analysis.models.paper import AGGREGATION_TABLE, AXES_LOSS, AXES_TABLE

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
ORDER = ("layer-drop", "aggregation", "pruning-axes", "head-merge", "distill-vs-finetune")
RERUN = "python cli.py experiment all"


def load_results(results_dir: str | Path) -> dict[str, dict]:
    """Every experiment file in ``results_dir`` (name -> document); a file that is not strict JSON or not a
    complete experiment result is named in a one-line error (never half a README section)."""
    out = {}
    for path in sorted(p for p in Path(results_dir).glob("*.json") if not p.name.startswith(".")):
        doc = read_json(path, "experiment result")
        name = doc.get("experiment") if isinstance(doc, dict) else None
        if name not in RENDERERS:
            raise MinitronError(f"{path}: not an experiment result (no known 'experiment' name; expected one of "
                                f"{', '.join(ORDER)})")
        try:  # the document renders, or it is named here
            _header({name: doc})
            RENDERERS[name](doc)
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
            raise MinitronError(f"{path}: not a complete experiment result ({type(exc).__name__}: "
                                f"{one_line(exc)})") from None
        out[name] = doc
    return out


# --- formatting -------------------------------------------------------------------------------------------
def _iv(cell_or_iv, digits: int = 2, sign: bool = False) -> str:
    """'7.51 [7.40, 7.62]', with 'collapsed' when a loss reached ln |V| on a seed."""
    if isinstance(cell_or_iv, Interval):
        return fmt(cell_or_iv, digits, sign)
    if cell_or_iv["interval"] is None:
        return "diverged"
    text = fmt(cell_or_iv["interval"], digits, sign)
    return f"{text} (collapsed)" if cell_or_iv["collapsed"] else text


def _shape(t: dict) -> str:
    return ", ".join(str(t[k]) if t[k] is not None else "all" for k in ("layers", "hidden", "ffn", "heads"))


def _m(params: int) -> str:
    return f"{params / 1e6:.1f}M"


def _ordinal(n: int | None) -> str:
    if n is None:
        return "not ranked"
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


# --- the header: teacher, protocol, times ---------------------------------------------------------------------
def _header(docs: dict[str, dict]) -> list[str]:
    any_doc = next(iter(docs.values()))
    sc, model = any_doc["scale"], any_doc["model"]
    lines = []
    if any(d["scale"]["name"] == "small" for d in docs.values()):
        lines += [(f"> **Placeholder: CI-scale results.** These files were made with `--small` (a ~5M-parameter cut of "
                  f"the embedded default, seconds per experiment); they show the format and mean nothing. The "
                  f"recorded results come from `{RERUN}` followed by `python cli.py experiment --report`."), ""]
    seeds = sorted({len(d["seeds"]) for d in docs.values()})
    lines += [
        f"**Teacher.** {model['note']}.",
        "",
        (f"**Protocol.** Each of {'/'.join(map(str, seeds))} seeds draws its own windows of {sc['seq_len']} tokens "
        f"from pydoc in three disjoint splits (`analysis/data.py`): {sc['calib_samples']} calibration windows "
        f"(importance), {sc['select_samples']} selection windows (drop-one-layer losses: depth by drop loss ranks "
        f"layers on them) and {sc['test_samples']} evaluation windows (every loss below except the layer-drop "
        "curves, which describe the selection windows). Training uses windows after the selection split, never "
        "evaluation ones, in its own order per seed. Each file records every seed's windows and hashes. Numbers "
        f"read mean [95% Student-t interval over seeds]; a comparison is the interval of per-seed paired "
        "differences, and a direction is stated only where that interval excludes zero, otherwise \"no measurable "
        f"difference\". A loss at or above ln |V| = {any_doc['collapse_threshold']:.2f} (a uniform guess over the "
        "vocabulary) on any seed is marked collapsed and neither ranked nor compared."),
        "",
        "| experiment | reproduces | seeds | took | analysis runs (shared) | machine | commit |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ORDER:
        if name in docs:
            d = docs[name]
            t = d["timing"]
            runs = ", ".join(_minutes(s) for s in t["analysis_s"])
            lines.append(f"| `{name}` | {d['reproduces']} | {len(d['seeds'])} | {_minutes(t['elapsed_s'])} | "
                         f"{runs} | {t['cpu_count']} CPU cores, {t['torch_threads']} thread"
                         f"{'s' if t['torch_threads'] > 1 else ''} | "
                         f"`{(d['git_commit'] or 'unknown')[:12]}` |")
        else:
            lines.append(f"| `{name}` | | | pending: `python cli.py experiment {name}` | | | |")
    return lines + [""]


# --- one renderer per experiment -------------------------------------------------------------------------------
def _layer_drop(doc: dict) -> list[str]:
    s = summarize(doc)
    lines = [(f"Loss increase when n contiguous layers are removed, over the selection windows (unpruned loss "
             f"{_iv(s['baseline'])}); start = index of the first removed layer."), "",
             ("| n | first block | last block | middle blocks (median) | cheapest (start: increase) | "
             "costliest (start: increase) | first − middle | last − middle |"), "|---|---|---|---|---|---|---|---|"]
    for n, b in s["blocks"].items():
        lines.append(f"| {n} | {_iv(b['first'], sign=True)} | {_iv(b['last'], sign=True)} | "
                     f"{_iv(b['middle'], sign=True)} | {b['cheapest'][0]}: {_iv(b['cheapest'][1], sign=True)} | "
                     f"{b['costliest'][0]}: {_iv(b['costliest'][1], sign=True)} | "
                     f"{_iv(b['first_vs_middle'], sign=True)} | {_iv(b['last_vs_middle'], sign=True)} |")
    one = s["blocks"].get(1)
    if one:
        edge = [f"the {w} layer costs {'more' if d.lo > 0 else 'less'} than a typical middle layer"
                if d.excludes_zero else f"{w} layer vs a typical middle layer: no measurable difference"
                for w, d in (("first", one["first_vs_middle"]), ("last", one["last_vs_middle"]))]
        lines += ["", (f"Dropping one layer: {edge[0]}; {edge[1]} (the follow-up paper: first and last layers matter "
                      f"most). Block Importance vs drop-one-layer loss: Spearman ρ = {_iv(s['spearman'])}.")]
    return lines


def _aggregation(doc: dict) -> list[str]:
    s = summarize(doc)
    settings = doc["settings"]
    names = list(s["targets"])
    head = [f"{n.replace('study (nemotron-3 8b)', 'study target (Nemotron-3 8B ratios)')}: "
            f"{_shape(settings['targets'][n])} ({_m(settings['params'][n])})" for n in names]
    lines = [(f"Zero-shot loss (no retraining) on the evaluation windows after width pruning with each batch_seq "
             f"aggregation of importance; unpruned {_m(doc['model']['params'])}, loss {_iv(s['teacher_loss'])}. "
             "Shapes as (layers, hidden, MLP, heads); the study target is the shape the paper's Table 11 prunes to "
             "(Nemotron-3 8B over Nemotron-4 15B: hidden and MLP 2/3, heads 32/48). Heads move in whole GQA "
             "groups: on the embedded default (9 heads, 3 groups) 9 × 32/48 = 6 exactly; Minitron 4B's 24/48 gives "
             "4.5, rounded to 6."), "",
             "| aggregation (batch_seq) | " + " | ".join(head) + f" | paper, {AGGREGATION_TABLE} (15B → study "
             "target, 8T blend) |", "|---" * (len(names) + 2) + "|"]
    for i, agg in enumerate(r["aggregation"] for r in s["targets"][names[0]]["rows"]):
        cells = []
        for n in names:
            r = next(x for x in s["targets"][n]["rows"] if x["aggregation"] == agg)
            cells.append(f"{_iv(r)} ({_ordinal(r['rank'])})" if not r["collapsed"] else _iv(r))
        paper = s["targets"][names[0]]["rows"][i]
        lines.append(f"| {agg}{' (paper’s choice)' if agg == 'l2_mean' else ''} | " + " | ".join(cells) +
                     f" | {paper['paper_loss']:.2f} ({_ordinal(paper['paper_rank'])}) |")
    lines.append("| Spearman ρ with the paper's order (rows not collapsed) | " +
                 " | ".join(_iv(s["targets"][n]["spearman"], sign=True) if s["targets"][n]["spearman"] else "n/a"
                            for n in names) + " | |")
    lines.append("")
    for n in names:
        t = s["targets"][n]
        vs = t["l2_mean_vs_best_other"]
        extra = f"; l2_mean − {vs['b']}: {_iv(vs['diff'], sign=True)}, {vs['words']}" if vs and vs["diff"] else ""
        lines.append(f"- {n}: {t['live']} of 9 aggregations below ln |V|; {t['agreement']}{extra}.")
    return lines


def _axes(doc: dict) -> list[str]:
    s = summarize(doc)
    settings = doc["settings"]
    steps = settings["steps"]
    lines = [(f"**At the paper's shapes ({AXES_TABLE}).** The paper prunes Nemotron-4 15B to ~8B along different "
             "axes and compares the losses after distillation. Here: width = the study target's widths "
             "(hidden, MLP, heads all 2/3); MLP + heads and depth + width remove as many parameters as that, with "
             "heads at 2/3 and the other axes sharing the rest of the budget equally; "
             "depth keeps half the layers (the paper's depth-only model keeps 16 of 32, more parameters than "
             f"width). Then {steps} distillation steps ({settings['batch_size']} windows of "
             f"{doc['scale']['seq_len']} tokens each), evaluated on the evaluation windows; unpruned loss "
             f"{_iv(s['teacher_loss'])}."), "",
             (f"| variant | shape (layers, hidden, MLP, heads) | params | zero-shot | after {steps} steps | "
             f"KL to teacher after | paper, {AXES_TABLE} (after ~1.8B tokens) |"), "|---|---|---|---|---|---|---|"]
    for r in s["paper"]:
        v = settings["groups"]["paper"][r["variant"]]
        lines.append(f"| {r['variant']} | {_shape(r['target'])} | {_m(v['params'])} | {_iv(r['zero_shot_loss'])} | "
                     f"{_iv(r['distilled_loss'])} | {_iv(r['distilled_kl'])} | {AXES_LOSS[r['variant']]:.3f} |")
    lines += ["", (f"| comparison (loss a − b) | ours after distillation | ours zero-shot | paper, {AXES_TABLE} | "
              "ours vs the paper |"),
              "|---|---|---|---|---|"]
    for c_after, c_zero in zip(s["comparisons"][::2], s["comparisons"][1::2]):
        lines.append(f"| {c_after['a']} − {c_after['b']} | {_diff(c_after)} | {_diff(c_zero)} | "
                     f"{c_after['paper_a'] - c_after['paper_b']:+.3f} | {c_after['versus_paper']} |")
    lines += ["", (f"**At a matched share ({settings['fraction']:.0%} of the parameters removed, zero-shot).** One "
              "axis (or set of axes) at a time, our own map of which axis is fragile; no paper column (the paper "
              "has no such table)."), "",
              "| variant | shape (layers, hidden, MLP, heads) | params | zero-shot |", "|---|---|---|---|"]
    for r in s["matched"]:
        v = settings["groups"]["matched"][r["variant"]]
        lines.append(f"| {r['variant']} | {_shape(r['target'])} | {_m(v['params'])} | {_iv(r['zero_shot_loss'])} |")
    lines += [""] + [f"- {c['a']} − {c['b']}: {_diff(c)}." for c in s["matched_comparisons"]]
    return lines


def _diff(c: dict) -> str:
    return c["words"] if c["diff"] is None else f"{_iv(c['diff'], sign=True)}: {c['words']}"


def _dvf(doc: dict) -> list[str]:
    s = summarize(doc)
    st = doc["settings"]
    lines = [(f"The Minitron-8B-ratio student ({_shape(st['student'])}, {_m(s['params'])}) trained {st['steps']} steps "
             f"({st['batch_size']} windows per step) from the same start on the same windows: logit distillation "
             "(forward KL to the teacher, temperature 1, the paper's recipe) and plain next-token fine-tuning. "
             f"Teacher loss on the evaluation windows {_iv(s['teacher_loss'])}."), "",
             "| mode | loss before | loss after | KL(teacher ‖ student) before | after | train time |",
             "|---|---|---|---|---|---|"]
    for r in s["rows"]:
        lines.append(f"| {r['mode']} | {_iv(r['loss_before'])} | {_iv(r['loss_after'])} | {_iv(r['kl_before'])} | "
                     f"{_iv(r['kl_after'])} | {r['train_s'].mean:.0f} s |")
    lines += ["", (f"Held-out loss after training, distillation − fine-tuning: {_diff(s['loss'])}. KL to the teacher "
              f"after training, distillation − fine-tuning: {_iv(s['kl']['diff'], sign=True)}: {s['kl']['words']}.")]
    return lines


def _merge(doc: dict) -> list[str]:
    s = summarize(doc)
    st = doc["settings"]
    lines = [(f"Heads-only pruning of the {s['teacher_heads']} heads ({s['kv_heads']} GQA groups), the same importance "
              "with and without the paper's head residual merging (kept query head i becomes head_i + (head_i − "
              "head_j) for the pruned head j it is paired with; `analysis/pruning/merge.py`), scored zero-shot and "
              f"after {st['steps']} distillation steps ({st['batch_size']} windows per step) on identical batches. "
              f"Teacher loss on the evaluation windows {_iv(s['teacher_loss'])}."), "",
             "| heads kept | merged pairs per layer | phase | merged | not merged | merged − not merged |",
             "|---|---|---|---|---|---|"]
    for r in s["rows"]:
        lines.append(f"| {s['teacher_heads']} → {r['heads']} | {r['pairs_per_layer']} | {r['phase']} | {_iv(r['merged'])} | "
                     f"{_iv(r['plain'])} | {_diff(r['diff'])} |")
    return lines


RENDERERS = {"layer-drop": _layer_drop, "aggregation": _aggregation, "pruning-axes": _axes,
             "distill-vs-finetune": _dvf, "head-merge": _merge}


def render(docs: dict[str, dict]) -> str:
    """The whole section, markers included."""
    lines = [BEGIN, "### Results on the embedded default (CPU)", "",
             ("Generated by `python cli.py experiment --report` from `notebooks/results/*.json`; do not edit by hand "
             "(`tests/experiments/test_report.py` fails when this section and the files disagree). "
             f"Rerun everything with `{RERUN}`."), ""]
    if not docs:
        lines += [f"No results committed yet: run `{RERUN}`, then `python cli.py experiment --report`.", END]
        return "\n".join(lines)
    lines += _header(docs)
    for name in ORDER:
        if name in docs:
            d = docs[name]
            lines += [f"#### {d['title']} ({d['reproduces']})", "", *RENDERERS[name](d), ""]
    return "\n".join(lines + [END])


def readme_section(text: str) -> str:
    """The generated section of a README (markers included)."""
    if BEGIN not in text or END not in text:
        raise MinitronError(f"README has no results markers ({BEGIN} ... {END})")
    return text[text.index(BEGIN): text.index(END) + len(END)]


def update_readme(readme: str | Path, results_dir: str | Path, check: bool = False) -> bool:
    """Rewrite the section between the markers from ``results_dir``; returns whether it changed.

    ``check``: change nothing, only report whether the README is out of date.
    """
    readme = Path(readme)
    try:
        text = readme.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MinitronError(f"{readme}: not UTF-8 text") from None
    except OSError as exc:
        raise MinitronError(f"{readme}: cannot read the README ({exc.strerror or exc})") from None
    new = render(load_results(results_dir))
    old = readme_section(text)
    if old != new and not check:
        write_text(readme, text.replace(old, new))
    return old != new
