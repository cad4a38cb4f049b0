"""Hook sites and the collector that streams activation statistics out of a forward pass.

Hook sites (named ``<kind>.<layer>``), activation shapes for B samples of T tokens:
  heads.l        input of o_proj, viewed (B, T, H, head_dim) -> per-head L2 norm (B, T, H)
  neurons.l      input of down_proj (post-activation, the default) or, with ``pre_activation``, the output
                 of the projection feeding the activation: up_proj (plain MLP) or gate_proj (gated), (B, T, F)
  channels.l.a   output of the pre-attention norm, (B, T, D)
  channels.l.m   output of the pre-MLP norm, (B, T, D)
  resid.j        residual stream at layer boundary j = 0..L (input of layer j; j = L: last output)

Hooks only reduce over the sequence (``seq_reduce``) and write the (B, C) result to a tape;
``fold`` moves the tape into float32 running statistics after each forward, one stacked
update per kind of site (a few dozen kernels per batch instead of thousands: on a GPU the
per-site updates alone cost ~3% of a 15B forward). Hooks are removed
in ``finally`` when the ``collecting`` context exits.

The hooks trace into one torch.compile graph without breaks (checked in tests/test_bench.py):
their only side effects are stores into ``tape`` and ``_ring``, which dynamo replays after the
graph runs. Keep them that way: no ``.item()``, no prints, no data-dependent Python branches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from analysis.importance.results import AGGREGATIONS
from analysis.importance.stats import BatchAggregator, MeanStat, seq_reduce
from analysis.models.adapter import DecoderAdapter


def neuron_site(pre_activation: bool, gated: bool) -> dict:
    """What neuron importance measures (metrics.json ``neuron_importance``), and whose choice it is.

    The paper (arXiv:2407.14679 §2.2) writes F_neuron from X W1^T, the MLP's first matrix before the
    activation; NVIDIA Model Optimizer (``mcore_minitron``) hooks the input of the second matrix, after
    it. We default to Model Optimizer's. For a gated MLP, down(act(x W_gate^T) * x W_up^T), "before the
    activation" means the gate projection alone: it is the activation's input, the analogue of X W1^T;
    the up projection never passes through the activation, so it is not scored on its own.
    """
    if not pre_activation:
        what = "act(x W_gate^T) * (x W_up^T)" if gated else "act(x W_up^T)"
        return {"site": "post-activation: the input of down_proj", "activation": what,
                "choice": "NVIDIA Model Optimizer's (mcore_minitron hooks the second MLP matrix's input); the default"}
    return {"site": "pre-activation: the output of " + ("gate_proj" if gated else "up_proj"),
            "activation": "x W_gate^T (gate only; up_proj is not scored)" if gated else "x W_up^T",
            "choice": "the paper's formula X W1^T (arXiv:2407.14679 §2.2); --pre-activation"}


def _output(out):
    return out[0] if isinstance(out, tuple) else out


class Collector:
    """Accumulates head / neuron / channel importance and layer-boundary similarities."""

    def __init__(self, adapter: DecoderAdapter, block_sizes=(1, 2, 4, 8), pre_activation=False, device="cpu"):
        self.ad = adapter
        self.device = torch.device(device)  # where the running statistics live
        self.L = adapter.num_layers
        self.block_sizes = tuple(n for n in sorted(set(block_sizes) | {1}) if 1 <= n <= self.L)
        self.pre_activation = pre_activation
        H, Fm, D = adapter.num_heads, adapter.config.intermediate_size, adapter.config.hidden_size
        S = len(AGGREGATIONS)  # sequence aggregations, in AGGREGATIONS order
        # one aggregator per kind of site, over (layer[, norm], seq aggregation, channel)
        self.agg = {"heads": BatchAggregator((self.L, S, H), device),
                    "neurons": BatchAggregator((self.L, S, Fm), device),
                    "channels": BatchAggregator((self.L, 2, S, D), device)}
        self.cos = {n: MeanStat((self.L - n + 1,), device) for n in self.block_sizes}
        self.angle = {n: MeanStat((self.L - n + 1,), device) for n in self.block_sizes}
        self.tape: dict[str, dict[str, torch.Tensor]] = {}
        self.seq_len = 0  # tokens per sample of the current batch, set by the caller
        self._ring: dict[int, torch.Tensor] = {}

    # --- hooks (reduce and record only) -----------------------------------------------------
    def _heads_hook(self, name):
        hd = self.ad.head_dim

        def hook(module, args):
            x = args[0]
            per_head = x.float().unflatten(-1, (-1, hd)).norm(dim=-1)  # (B, T, H)
            self.tape[name] = seq_reduce(per_head)
        return hook

    def _reduce_input_hook(self, name):
        def hook(module, args):
            self.tape[name] = seq_reduce(args[0])
        return hook

    def _reduce_output_hook(self, name):
        def hook(module, args, out):
            self.tape[name] = seq_reduce(_output(out))
        return hook

    def _boundary(self, j: int, x: torch.Tensor) -> None:
        """Residual state at boundary j: cosines against the states n boundaries back.

        The ring keeps (state, per-token norm) so each state's norm is computed once, not once
        per block size; cos = <a, b> / max(|a| |b|, 1e-8), in float32.
        """
        xf = x.float()
        norm = torch.linalg.vector_norm(xf, dim=-1)  # (B, T)
        for n in self.block_sizes:
            prev = self._ring.get(j - n)
            if prev is not None:
                p, pn = (t.to(x.device) for t in prev)  # layers may sit on different GPUs (device_map)
                c = torch.linalg.vecdot(p.float(), xf) / (pn * norm).clamp_min(1e-8)  # (B, T)
                ang = torch.arccos(c.clamp(-1, 1)) / torch.pi
                self.tape[f"cos.{n}.{j - n}"] = {"cos": c.sum(dim=1), "angle": ang.sum(dim=1)}  # (B,)
        self._ring[j] = (x, norm)
        self._ring.pop(j - max(self.block_sizes), None)

    def _layer_in_hook(self, j):
        def hook(module, args, kwargs):
            self._boundary(j, args[0] if args else kwargs["hidden_states"])
        return hook

    def _last_out_hook(self, module, args, out):
        self._boundary(self.L, _output(out))

    @contextlib.contextmanager
    def collecting(self) -> Iterator[Collector]:
        """Register every hook; they are removed in ``finally`` whatever happens."""
        handles = []
        ad = self.ad
        try:
            for i in range(self.L):
                handles.append(ad.o_proj(i).register_forward_pre_hook(self._heads_hook(f"heads.{i}")))
                if self.pre_activation:
                    h = ad.mlp_pre_activation(i).register_forward_hook(self._reduce_output_hook(f"neurons.{i}"))
                else:
                    h = ad.down_proj(i).register_forward_pre_hook(self._reduce_input_hook(f"neurons.{i}"))
                handles.append(h)
                for norm, p in zip(ad.norms(i), "am"):
                    handles.append(norm.register_forward_hook(self._reduce_output_hook(f"channels.{i}.{p}")))
                handles.append(ad.layers[i].register_forward_pre_hook(self._layer_in_hook(i), with_kwargs=True))
            handles.append(ad.layers[self.L - 1].register_forward_hook(self._last_out_hook))
            yield self
        finally:
            for h in handles:
                h.remove()
            self.tape.clear()
            self._ring.clear()

    # --- accumulation ------------------------------------------------------------------------
    def _sites(self, kind: str) -> list[str]:
        if kind == "channels":
            return [f"channels.{i}.{p}" for i in range(self.L) for p in "am"]
        return [f"{kind}.{i}" for i in range(self.L)]

    def _stacked(self, tape: dict, kind: str, valid: int | None) -> torch.Tensor:
        """(B, *aggregator shape): every site's seq reductions of one kind, first ``valid`` rows."""
        rows = [tape[site][s][:valid].to(self.device) for site in self._sites(kind) for s in AGGREGATIONS]
        stacked = torch.stack(rows, dim=1)  # (B, sites * S, C)
        return stacked.view(stacked.shape[0], *self.agg[kind].mean.shape)

    def fold(self, valid: int | None = None) -> None:
        """Move the tape of one forward into the running statistics (first ``valid`` rows only)."""
        tape, self.tape = self.tape, {}
        self._ring.clear()
        if not tape:  # a forward ran but no hook fired: e.g. a compiled graph traced without them
            raise RuntimeError("fold() after a forward that recorded nothing: are the hooks registered "
                               "(and, compiled, traced into the graph; see perf.hooks_guarded)?")
        for kind, agg in self.agg.items():
            agg.update(self._stacked(tape, kind, valid))
        for n in self.block_sizes:
            starts = range(self.L - n + 1)
            cos = torch.stack([tape[f"cos.{n}.{s}"]["cos"][:valid] for s in starts], dim=1)  # (B, L-n+1)
            ang = torch.stack([tape[f"cos.{n}.{s}"]["angle"][:valid] for s in starts], dim=1)
            tokens = cos.shape[0] * self.seq_len
            self.cos[n].update(cos.sum(dim=0).to(self.device), tokens)
            self.angle[n].update(ang.sum(dim=0).to(self.device), tokens)

    def finalize(self) -> dict[str, torch.Tensor]:
        """Named float32 tensors as documented in analysis/results.py (before depth metrics)."""
        out: dict[str, torch.Tensor] = {}
        for kind in ("heads", "neurons"):
            fin = self.agg[kind].finalize()  # {batch_agg: (L, S, C)}
            for b, value in fin.items():
                for k, s in enumerate(AGGREGATIONS):
                    out[f"{kind}.{b}_{s}"] = value[:, k].contiguous()  # (L, C)
        for b, value in self.agg["channels"].finalize().items():  # (L, 2, S, D)
            for k, s in enumerate(AGGREGATIONS):
                per_norm = value[:, :, k].reshape(2 * self.L, -1)  # (2L, D): attn, mlp norm per layer
                out[f"channels.{b}_{s}"] = per_norm.sum(dim=0)  # one network-wide score per channel
                out[f"channels.per_norm.{b}_{s}"] = per_norm
        for n in self.block_sizes:
            out[f"cos.n{n}"] = self.cos[n].finalize()
            out[f"angular.n{n}"] = self.angle[n].finalize()
        return out

    def _stats(self) -> dict:
        """Every running statistic by name: agg.<kind>, cos.<n>, angle.<n>."""
        return ({f"agg.{k}": v for k, v in self.agg.items()} | {f"cos.{n}": v for n, v in self.cos.items()}
                | {f"angle.{n}": v for n, v in self.angle.items()})

    def state(self) -> dict[str, torch.Tensor]:
        """Every running statistic as flat names -> tensors (checkpoints as safetensors, rank merging)."""
        return {f"{name}.{field}": t for name, stat in self._stats().items() for field, t in stat.state().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore ``state()``; a state of another shape or other block sizes is refused."""
        if set(state) != set(self.state()):
            raise ValueError("collector state does not match this model and these block sizes")
        for name, stat in self._stats().items():
            stat.load_state({field: state[f"{name}.{field}"].to(self.device) for field in stat.state()})

    def merge(self, other: Collector) -> None:
        """Fold another collector in (another rank's share of the batches); as if one stream."""
        theirs = other._stats()
        for name, stat in self._stats().items():
            stat.merge(theirs[name])
