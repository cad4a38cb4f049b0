"""Teacher against student (``compare`` runs): layer similarity, KL along the window, the tokens that got worse."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.patches import Rectangle

from figures import style

ROLE_ORDER = ("baseline", "student")  # pruned-only first, so the distilled curve is drawn on top


def _name(result, side: str) -> str:
    s = result.doc["students"][side]
    return f"{s.get('label', s['model']['name'])} ({s['role']})"


def _windows(result) -> str:
    d = result.doc["windows"]["data"]
    return f"{d['source']}, {d['eval_samples']} held-out windows x {d['seq_len']} tokens"


def _sides(result) -> list[str]:
    return sorted(result.sides, key=lambda s: ROLE_ORDER.index(s) if s in ROLE_ORDER else len(ROLE_ORDER))


@style.house
def cka_heatmap(result, side: str = "student", ax=None):
    """Linear CKA of every student boundary (rows) against every teacher boundary (columns); matched depth outlined."""
    matrix = result.tensors[f"{side}.cka"].numpy()  # (Ls+1, Lt+1)
    Ls, Lt = matrix.shape[0] - 1, matrix.shape[1] - 1
    _, ax = style.new_axes(ax, figsize=(min(12.0, 0.24 * Lt + 3.5), min(9.0, 0.22 * Ls + 2.6)))
    sns.heatmap(matrix, ax=ax, vmin=0, vmax=1, cmap=style.SEQUENTIAL, square=Ls == Lt,
                xticklabels=max(1, Lt // 10), yticklabels=max(1, Ls // 10), cbar_kws={"label": "linear CKA"})
    ax.grid(False)
    cka = result.doc["students"][side]["cka"]
    for s, t in cka["pairs"]:
        ax.add_patch(Rectangle((t, s), 1, 1, fill=False, edgecolor=style.color(1), lw=1.6))
    ax.set_xlabel(f"{result.doc['teacher']['name']}: residual stream after layer (0 = embeddings)")
    ax.set_ylabel(f"{_name(result, side)}: residual stream after layer")
    mean = cka["matched_mean"]
    matched = f"outlined: matched depth, mean CKA {mean:.2f}" if mean is not None else "no matched depth"
    robust = cka.get("without_massive") or {}
    if mean is not None and robust.get("dropped") and robust.get("matched_mean") is not None:
        matched += f" ({robust['matched_mean']:.2f} without {robust['dropped']} massive-activation token(s))"
    ax.set_title(f"Representation similarity, teacher vs {_name(result, side)}\n{matched}; "
                 f"{cka['tokens']} tokens of {_windows(result)}")
    return ax


def _smooth(y: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average (edges use the values available)."""
    if width <= 1:
        return y
    kernel = np.ones(width)
    return np.convolve(y, kernel, mode="same") / np.convolve(np.ones_like(y), kernel, mode="same")


@style.house
def kl_by_position(result, ax=None):
    """Mean KL(teacher || student) at each position of the window, per student, with a 95% band over windows."""
    _, ax = style.new_axes(ax, figsize=(8.0, 4.4))
    for i, side in enumerate(_sides(result)):
        kl = result.tensors[f"{side}.kl"].double().numpy()  # (N, T)
        n, T = kl.shape
        mean, half = kl.mean(0), 1.96 * kl.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(kl.shape[1])
        width = max(1, T // 32)
        x = np.arange(T)
        c = style.color(i)
        ax.fill_between(x, _smooth(mean - half, width), _smooth(mean + half, width), color=c, alpha=0.18, lw=0)
        overall = result.doc["students"][side]["kl"]["value"]
        ax.plot(x, _smooth(mean, width), color=c, lw=2, label=f"{_name(result, side)}: mean {overall:.2f} nats")
    ax.set_xlim(0, T - 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("position in the window (tokens of prefix the models see)")
    ax.set_ylabel("KL(teacher || student), nats")
    note = f"moving average over {width} positions, " if width > 1 else ""
    ax.set_title(f"Where in the window the student departs from {result.doc['teacher']['name']}\n"
                 f"{_windows(result)}; {note}band: 95% interval over windows")
    ax.legend(loc="upper right")
    return ax


def _short(text: str, n: int) -> str:
    text = " ".join(text.replace("\n", " ⏎ ").split())
    return text if len(text) <= n else "…" + text[-(n - 1):]


def _p(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.0e}"


@style.house
def worst_tokens(result, side: str = "student", k: int = 15, ax=None):
    """The ``k`` tokens whose next-token loss rose most, each labelled with its context and the token itself."""
    rows = result.doc["students"][side]["worst_tokens"][:k]
    _, ax = style.new_axes(ax, figsize=(9.5, 0.36 * len(rows) + 1.6))
    y = np.arange(len(rows))[::-1]
    delta = [r["delta_nll"] for r in rows]
    ax.barh(y, delta, color=style.color(3), height=0.7)
    labels = [f"{_short(r['context'], 34)} ⟨{_short(r['token'], 14)}⟩" for r in rows]
    ax.set_yticks(y, labels, fontsize=8)
    for yi, r in zip(y, rows):
        ax.text(r["delta_nll"], yi, f"  p {_p(r['teacher_p'])} → {_p(r['student_p'])}; student says "
                f"⟨{_short(r['student_top'], 12)}⟩", va="center", fontsize=7.5, color="0.25")
    ax.set_xlim(0, max(delta) * 1.6 if delta else 1)
    ax.set_xlabel("loss increase on the token, nats (student − teacher)")
    ax.grid(axis="y", visible=False)
    conc = result.doc["students"][side]["concentration"]
    share = conc.get("top_0.1")
    extra = f"the top 10% of tokens carry {share:.0%} of the total increase; " if share is not None else ""
    ax.set_title(f"Tokens {_name(result, side)} lost most on, with the text before them\n"
                 f"{extra}{_windows(result)}")
    return ax


def compare_figures(result) -> dict[str, plt.Figure]:
    """Every figure of a compare run, by name (left open; the caller saves and closes them)."""
    figs = {"cka": cka_heatmap(result).figure, "kl_by_position": kl_by_position(result).figure,
            "worst_tokens": worst_tokens(result).figure}
    if "baseline" in result.sides:
        figs["cka_baseline"] = cka_heatmap(result, side="baseline").figure
    return figs
