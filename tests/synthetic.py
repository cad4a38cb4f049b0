"""A synthetic analysis run: random but correctly shaped tensors and a metrics.json of the engine's schema.

Figures and cards are tested against it so they do not depend on the analysis engine's speed.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from analysis.importance.results import AGGREGATIONS, write_run
from analysis.models.registry import Architecture

ARCH = Architecture(family="nemotron", layers=8, hidden=64, heads=8, kv_heads=2, head_dim=8, mlp=96,
                    vocab=97, activation="relu2", norm="layernorm1p", rotary_fraction=0.5, max_positions=128)


def synthetic_tensors(arch: Architecture, block_sizes=(1, 2, 4, 8), seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor an analysis run holds, with the documented shapes (see analysis/results.py)."""
    g = torch.Generator().manual_seed(seed)
    L, H, F, D = arch.layers, arch.heads, arch.mlp, arch.hidden
    base = {"heads": torch.rand(L, H, generator=g), "neurons": torch.rand(L, F, generator=g) ** 2,
            "channels": torch.rand(D, generator=g).exp()}
    t = dict(base)
    for b in AGGREGATIONS:
        for s in AGGREGATIONS:
            for axis, v in base.items():  # correlated with the default, as real aggregations are
                t[f"{axis}.{b}_{s}"] = v + 0.3 * torch.rand(v.shape, generator=g) * v.mean()
    t["channels.per_norm"] = torch.rand(2 * L, D, generator=g)
    edge = torch.linspace(-1, 1, L).abs()  # first and last layers matter most
    t["block_importance"] = 0.05 + 0.3 * edge + 0.02 * torch.rand(L, generator=g)
    t["drop_layer_loss"] = 3.0 + 2.0 * edge + 0.1 * torch.rand(L, generator=g)
    for k in block_sizes:
        if k <= L:
            n = L - k + 1
            t[f"angular.n{k}"] = (0.1 + 0.05 * k + 0.1 * torch.rand(n, generator=g)).clamp(max=0.5)
            block = 3.0 + 0.5 * k + torch.rand(n, generator=g)
            t[f"drop_block_loss.n{k}"] = t["drop_layer_loss"].clone() if k == 1 else block
    return t


def synthetic_metrics(arch: Architecture, tensors: dict, name: str = "tiny-synthetic") -> dict:
    """A metrics.json dict of the engine's schema, consistent with ``tensors``."""
    L, loss = arch.layers, 3.0
    drop = tensors["drop_layer_loss"].tolist()
    blocks = {}
    for key in sorted(k for k in tensors if k.startswith("drop_block_loss.n")):
        k = key.split(".n")[1]
        n = len(tensors[key])
        blocks[k] = {"start": list(range(n)), "loss": tensors[key].tolist(),
                     "angular": tensors[f"angular.n{k}"].tolist()}
    return {
        "run_id": "20250101-000000-test", "created": "2025-01-01T00:00:00+00:00",
        "model": {"name": name, "ref": name, "kind": "random-init", "hf_id": None,
                  "weights_fingerprint": "random-init(seed=0)", "params": arch.params()["total"],
                  "dtype": "float32", "device": "cpu"},
        "architecture": asdict(arch),
        "data": {"source": "pydoc", "protocol": "pydoc windows v1",
                 "config": {"seq_len": 32, "calib_samples": 4, "eval_samples": 2, "seed": 0},
                 "stream_tokens": 4096, "calib_sha256": "ab" * 8, "eval_sha256": "cd" * 8},
        "config": {"block_sizes": [int(k) for k in blocks], "batch_size": 2, "pre_activation": False},
        "eval": {"loss": loss, "perplexity": 20.09, "tokens_scored": 62, "protocol": "next-token, no BOS"},
        "layers": [{"layer": i, "block_importance": float(tensors["block_importance"][i]), "drop_loss": drop[i],
                    "drop_perplexity": float(torch.tensor(drop[i]).exp()), "delta_loss": drop[i] - loss}
                   for i in range(L)],
        "blocks": blocks,
        "rank_agreement": {"spearman_bi_vs_drop_loss": 0.9},
        "timings": {"load_s": 0.1, "calibration_s": 0.2, "eval_s": 0.1, "sensitivity_s": 0.3, "total_s": 0.7},
        "versions": {"torch": torch.__version__, "transformers": "5", "python": "3", "minitron_lab": "0.1.0"},
    }


def synthetic_run(path: Path, arch: Architecture = ARCH, name: str = "tiny-synthetic") -> Path:
    """Write a synthetic run directory and return its path."""
    tensors = synthetic_tensors(arch)
    return write_run(Path(path), tensors, synthetic_metrics(arch, tensors, name))
