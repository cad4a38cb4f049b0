"""Finished statistics into depth tensors and per-layer rows, and the console summary of a run."""

from __future__ import annotations

import math

import torch

from analysis.importance.metrics import block_importance


def depth_tensors(t: dict[str, torch.Tensor], nll_drop: dict[int, list[float]], tokens: int,
                  sizes) -> dict[str, torch.Tensor]:
    """block_importance [L] and drop_block_loss.n<k> [L-k+1] (summed NLL / scored tokens)."""
    out = {"block_importance": block_importance(t["cos.n1"])}
    for n in sizes:
        if n in nll_drop and tokens > 0:  # no scored tokens: no loss to report
            out[f"drop_block_loss.n{n}"] = torch.tensor(nll_drop[n], dtype=torch.float64).div(tokens).float()
    if "drop_block_loss.n1" in out:
        out["drop_layer_loss"] = out["drop_block_loss.n1"]
    return out


def layer_table(t: dict[str, torch.Tensor], loss: float) -> list[dict]:
    """One row per layer: block importance and, with sensitivity, the loss without the layer."""
    rows = []
    for i, bi in enumerate(t["block_importance"].tolist()):
        row = {"layer": i, "block_importance": bi}
        if "drop_layer_loss" in t:
            d = float(t["drop_layer_loss"][i])
            row |= {"drop_loss": d, "drop_perplexity": math.exp(min(d, 50.0)), "delta_loss": d - loss}
        rows.append(row)
    return rows


def print_summary(m: dict, console) -> None:
    """A short table: perplexity, most and least important layers, rank agreement, timings."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{m['model']['name']} on {m['data']['source']}"), show_header=False)
    table.add_row("perplexity (eval)", f"{m['eval']['perplexity']:.3f}  (loss {m['eval']['loss']:.4f}, "
                  f"{m['eval']['tokens_scored']} tokens)")
    layers = m["layers"]
    if layers and "drop_loss" in layers[0]:
        ranked = sorted(layers, key=lambda r: r["drop_loss"], reverse=True)
        fmt = ", ".join
        table.add_row("most important layers (loss change without it)",
                      fmt(f"{r['layer']} ({r['delta_loss']:+.3f})" for r in ranked[:3]))
        table.add_row("least important layers", fmt(f"{r['layer']} ({r['delta_loss']:+.3f})" for r in ranked[-3:]))
        rho = m["rank_agreement"].get("spearman_bi_vs_drop_loss")
        table.add_row("Spearman BI vs drop loss", "undefined (constant ranks)" if rho is None else f"{rho:.3f}")
    bi = sorted(layers, key=lambda r: r["block_importance"], reverse=True)
    table.add_row("highest block importance", ", ".join(f"{r['layer']} ({r['block_importance']:.3f})" for r in bi[:3]))
    t = m["timings"]
    sessions = t.get("sessions", 1)
    table.add_row("timings", f"load {t['load_s']:.1f}s, calibration {t['calibration_s']:.1f}s "
                  f"({t['calibration_tokens_per_s']:.0f} tok/s), eval {t['eval_s']:.1f}s, "
                  f"sensitivity {t['sensitivity_s']:.1f}s, total {t['total_s']:.1f}s"
                  + (f" over {sessions} sessions (resumed)" if sessions > 1 else ""))
    console.print(table)
