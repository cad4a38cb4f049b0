"""Turn finished statistics into depth tensors, the metrics.json document and a console summary."""

from __future__ import annotations

import math
from dataclasses import asdict

import torch

from analysis.importance.metrics import block_importance, spearman
from analysis.importance.sensitivity import PROTOCOL


def depth_tensors(t: dict[str, torch.Tensor], state: dict, sizes, num_layers: int) -> dict[str, torch.Tensor]:
    """block_importance [L] and drop_block_loss.n<k> [L-k+1] (mean loss per scored token)."""
    out = {"block_importance": block_importance(t["cos.n1"])}
    tokens = max(state["eval_tokens"], 1)
    for n in sizes:
        if n in state["nll_drop"]:
            out[f"drop_block_loss.n{n}"] = torch.tensor(state["nll_drop"][n], dtype=torch.float64).div(tokens).float()
    if "drop_block_loss.n1" in out:
        out["drop_layer_loss"] = out["drop_block_loss.n1"]
    return out


def _layer_table(t, loss: float) -> list[dict]:
    rows = []
    for i, bi in enumerate(t["block_importance"].tolist()):
        row = {"layer": i, "block_importance": bi}
        if "drop_layer_loss" in t:
            d = float(t["drop_layer_loss"][i])
            row |= {"drop_loss": d, "drop_perplexity": math.exp(min(d, 50.0)), "delta_loss": d - loss}
        rows.append(row)
    return rows


def build_metrics(key, lm, splits, cfg, state, t, sizes, timings, borrowed_tokenizer) -> dict:
    """The metrics.json document (schema in analysis/results.py and the README)."""
    from analysis.importance.pipeline import now, versions

    tokens = max(state["eval_tokens"], 1)
    loss = state["nll_full"] / tokens
    blocks = {}
    for n in sizes:
        entry = {"start": list(range(len(t[f"angular.n{n}"]))), "angular": t[f"angular.n{n}"].tolist()}
        if f"drop_block_loss.n{n}" in t:
            entry["loss"] = t[f"drop_block_loss.n{n}"].tolist()
        blocks[str(n)] = entry
    agreement = {}
    if "drop_layer_loss" in t:
        agreement["spearman_bi_vs_drop_loss"] = spearman(t["block_importance"], t["drop_layer_loss"])
    calib_tokens = splits.calib.numel()
    model = {k: lm.provenance.get(k) for k in ("name", "ref", "kind", "hf_id", "weights_fingerprint", "params",
                                                 "dtype", "device")}
    return {
        "run_id": key, "created": now(), "model": model,
        "architecture": asdict(lm.adapter.arch),
        "data": splits.meta | {"tokenizer": borrowed_tokenizer or "model's own"},
        "config": {"batch_size": cfg.batch_size, "block_sizes": list(sizes), "pre_activation": cfg.pre_activation,
                   "compile": cfg.compile, "sensitivity": cfg.sensitivity, "aggregation_default": "l2_mean",
                   "load": asdict(cfg.load), "data": asdict(cfg.data)},
        "eval": {"loss": loss, "perplexity": math.exp(loss), "tokens_scored": state["eval_tokens"],
                 "protocol": PROTOCOL},
        "layers": _layer_table(t, loss),
        "blocks": blocks,
        "rank_agreement": agreement,
        "timings": timings | {"calibration_tokens_per_s": calib_tokens / max(timings["calibration_s"], 1e-9)},
        "versions": versions(),
    }


def print_summary(m: dict, console) -> None:
    """A short table: perplexity, most and least important layers, rank agreement, timings."""
    from rich.table import Table

    table = Table(title=f"{m['model']['name']} on {m['data']['source']}", show_header=False)
    table.add_row("perplexity (eval)", f"{m['eval']['perplexity']:.3f}  (loss {m['eval']['loss']:.4f}, "
                  f"{m['eval']['tokens_scored']} tokens)")
    layers = m["layers"]
    if layers and "drop_loss" in layers[0]:
        ranked = sorted(layers, key=lambda r: r["drop_loss"], reverse=True)
        fmt = ", ".join
        table.add_row("most important layers", fmt(f"{r['layer']} (+{r['delta_loss']:.3f})" for r in ranked[:3]))
        table.add_row("least important layers", fmt(f"{r['layer']} (+{r['delta_loss']:.3f})" for r in ranked[-3:]))
        table.add_row("Spearman BI vs drop loss", f"{m['rank_agreement']['spearman_bi_vs_drop_loss']:.3f}")
    bi = sorted(layers, key=lambda r: r["block_importance"], reverse=True)
    table.add_row("highest block importance", ", ".join(f"{r['layer']} ({r['block_importance']:.3f})" for r in bi[:3]))
    t = m["timings"]
    table.add_row("timings", f"load {t['load_s']:.1f}s, calibration {t['calibration_s']:.1f}s "
                  f"({t['calibration_tokens_per_s']:.0f} tok/s), eval {t['eval_s']:.1f}s, "
                  f"sensitivity {t['sensitivity_s']:.1f}s, total {t['total_s']:.1f}s")
    console.print(table)
