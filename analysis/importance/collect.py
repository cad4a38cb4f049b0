"""Hook sites and the collector that streams activation statistics out of a forward pass.

Hook sites, activation shapes for B samples of T tokens:
  heads      input of o_proj, viewed (B, T, H, head_dim) -> per-head L2 norm (B, T, H)
  neurons    input of down_proj (post-activation, the default) or, with ``pre_activation``, the output of
             the projection feeding the activation: up_proj (plain MLP) or gate_proj (gated), (B, T, F)
  channels   outputs of the pre-attention and pre-MLP norms, (B, T, D) each
  boundary   residual stream at layer boundary j = 0..L (input of layer j; j = L: last output)

A site's hook reduces over the sequence (``stats.seq_stats``) and writes the (B, S, C) result IN
PLACE into a tensor the collector gave that module (attribute ``TAPE``); ``fold`` stacks the tapes
of one kind after each forward into the float32 running statistics (a few dozen kernels per batch).
Writing in place into a module's own tensor, rather than into a shared dict, is what lets one
compiled decoder layer serve every layer (regional compilation, ``DecoderAdapter.compiled_layers``):
the hook's code is identical for all layers and touches no Python state dynamo would guard on.
Boundary cosines need earlier layers' states: their hooks sit on the layer itself, outside a
regionally compiled forward, and keep a small ring of recent states (with ``fuse=True`` their
arithmetic runs as one compiled function). Hooks are removed in ``finally``.

With ``per_sample=True`` the fold also keeps every sample's sequence means (the default aggregation's
first stage) on the host: heads (N, L, H), neurons (N, L, F), channels (N, L, 2, D), float32, for
resampling calibration windows (``analysis.importance.bootstrap``). That is N x (L H + L F + 2 L D)
floats: 8 MB for the embedded default at 64 samples, ~5 GB for Nemotron-4 15B at 1024.

Keep hooks traceable: no ``.item()``, no prints, no data-dependent Python branches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from analysis.importance.results import AGGREGATIONS
from analysis.importance.stats import BatchAggregator, MeanStat, seq_stats
from analysis.models.adapter import DecoderAdapter

TAPE = "minitron_tape"  # per hooked module: (B, S, C) float32, overwritten by every forward
SEQ_MEAN = AGGREGATIONS.index("mean")  # the default aggregation's sequence stage (batch L2 of sequence means)


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


def _heads_hook(module, args):
    tape = getattr(module, TAPE)  # (B, S, H)
    per_head = args[0].float().unflatten(-1, (tape.shape[-1], -1)).norm(dim=-1)  # (B, T, H)
    tape.copy_(seq_stats(per_head))


def _input_hook(module, args):
    getattr(module, TAPE).copy_(seq_stats(args[0]))


def _output_hook(module, args, out):
    getattr(module, TAPE).copy_(seq_stats(_output(out)))


def boundary_stats(x: torch.Tensor, prevs: list[torch.Tensor], prev_norms: list[torch.Tensor]):
    """Per-token norm of x (B, T, D) and, against each earlier state, the sums over tokens of
    cos = <a, b> / max(|a| |b|, 1e-8) and of arccos(cos) / pi, float32: (B, T), [(B,)], [(B,)]."""
    xf = x.float()
    norm = torch.linalg.vector_norm(xf, dim=-1)  # (B, T)
    cos_sums, angle_sums = [], []
    for p, pn in zip(prevs, prev_norms):
        c = torch.linalg.vecdot(p.float(), xf) / (pn * norm).clamp_min(1e-8)  # (B, T)
        cos_sums.append(c.sum(dim=1))
        angle_sums.append((torch.arccos(c.clamp(-1, 1)) / torch.pi).sum(dim=1))
    return norm, cos_sums, angle_sums


class Collector:
    """Accumulates head / neuron / channel importance and layer-boundary similarities."""

    def __init__(self, adapter: DecoderAdapter, block_sizes=(1, 2, 4, 8), pre_activation=False, device="cpu",
                 per_sample: bool = False):
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
        self.tape: dict[str, dict[str, torch.Tensor]] = {}  # boundary statistics of the current forward
        self.samples: dict[str, list[torch.Tensor]] | None = {k: [] for k in self.agg} if per_sample else None
        self.seq_len = 0  # tokens per sample of the current batch (``begin``)
        self._ring: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._sites: dict[str, list[torch.nn.Module]] = {}  # kind -> hooked modules, in site order
        self._boundary_fn = boundary_stats

    # --- boundary hooks (on the layers themselves) ---------------------------------------------
    def _boundary(self, j: int, x: torch.Tensor) -> None:
        """Residual state at boundary j against the states n boundaries back (n in block_sizes).

        The ring keeps (state, per-token norm) so each state's norm is computed once, not once per block size.
        """
        ns = [n for n in self.block_sizes if (j - n) in self._ring]
        prev = [self._ring[j - n] for n in ns]  # layers may sit on different GPUs (device_map)
        norm, cos, ang = self._boundary_fn(x, [p.to(x.device) for p, _ in prev], [pn.to(x.device) for _, pn in prev])
        for n, c, a in zip(ns, cos, ang):
            self.tape[f"cos.{n}.{j - n}"] = {"cos": c, "angle": a}  # (B,)
        self._ring[j] = (x, norm)
        self._ring.pop(j - max(self.block_sizes), None)

    def _layer_in_hook(self, j):
        def hook(module, args, kwargs):
            self._boundary(j, args[0] if args else kwargs["hidden_states"])
        return hook

    def _last_out_hook(self, module, args, out):
        self._boundary(self.L, _output(out))

    @contextlib.contextmanager
    def collecting(self, fuse: bool = False) -> Iterator[Collector]:
        """Register every hook; they (and the tapes) are removed in ``finally`` whatever happens.

        ``fuse``: run the boundary arithmetic as one compiled function (for regional compilation,
        where those hooks run outside the compiled layers; the site hooks are inside them).
        """
        handles, ad = [], self.ad
        self._sites = {"heads": [], "neurons": [], "channels": []}
        self._boundary_fn = torch.compile(boundary_stats, dynamic=False) if fuse else boundary_stats
        try:
            for i in range(self.L):
                self._sites["heads"].append(ad.o_proj(i))
                handles.append(ad.o_proj(i).register_forward_pre_hook(_heads_hook))
                if self.pre_activation:
                    site = ad.mlp_pre_activation(i)
                    handles.append(site.register_forward_hook(_output_hook))
                else:
                    site = ad.down_proj(i)
                    handles.append(site.register_forward_pre_hook(_input_hook))
                self._sites["neurons"].append(site)
                for norm in ad.norms(i):  # attention norm, then MLP norm
                    self._sites["channels"].append(norm)
                    handles.append(norm.register_forward_hook(_output_hook))
                handles.append(ad.layers[i].register_forward_pre_hook(self._layer_in_hook(i), with_kwargs=True))
            handles.append(ad.layers[self.L - 1].register_forward_hook(self._last_out_hook))
            yield self
        finally:
            for h in handles:
                h.remove()
            for m in (m for ms in self._sites.values() for m in ms):
                if hasattr(m, TAPE):
                    delattr(m, TAPE)
            self._sites = {}
            self.tape.clear()
            self._ring.clear()

    def begin(self, batch: int, seq_len: int) -> None:
        """Before each forward: give every hooked module a (batch, S, C) tape, NaN until its hook writes it.

        Tapes of the right shape are reused; the NaN fill is how ``fold`` knows every hook ran.
        """
        self.seq_len = seq_len
        S = len(AGGREGATIONS)
        for kind, modules in self._sites.items():
            width = self.agg[kind].mean.shape[-1]
            for m in modules:
                tape = getattr(m, TAPE, None)
                if tape is None or tape.shape[0] != batch:
                    device = next((p.device for p in m.parameters()), self.device)
                    setattr(m, TAPE, torch.empty(batch, S, width, device=device))
                getattr(m, TAPE).fill_(float("nan"))

    # --- accumulation ------------------------------------------------------------------------
    def _stacked(self, kind: str, valid: int | None) -> torch.Tensor:
        """(B, *aggregator shape): every site's tape of one kind, first ``valid`` rows, on the stats device."""
        stacked = torch.stack([getattr(m, TAPE)[:valid].to(self.device) for m in self._sites[kind]], dim=1)
        return stacked.view(stacked.shape[0], *self.agg[kind].mean.shape)  # (B, sites, S, C) -> (B, L[, 2], S, C)

    def fold(self, valid: int | None = None) -> None:
        """Move the statistics of one forward into the running statistics (first ``valid`` rows only)."""
        tape, self.tape = self.tape, {}
        self._ring.clear()
        stacked = {kind: self._stacked(kind, valid) for kind in self.agg}
        if not tape or any(bool(t.isnan().any()) for t in stacked.values()):
            raise RuntimeError("a forward left statistics unwritten (or the model produced NaN): are the hooks "
                               "registered and, when compiled, traced into the graph (see perf.hooks_guarded)?")
        for kind, agg in self.agg.items():
            agg.update(stacked[kind])
            if self.samples is not None:  # the sequence means (first stage of the default aggregation)
                self.samples[kind].append(stacked[kind].select(-2, SEQ_MEAN).cpu())
        for n in self.block_sizes:
            starts = range(self.L - n + 1)
            cos = torch.stack([tape[f"cos.{n}.{s}"]["cos"][:valid] for s in starts], dim=1)  # (B, L-n+1)
            ang = torch.stack([tape[f"cos.{n}.{s}"]["angle"][:valid] for s in starts], dim=1)
            tokens = cos.shape[0] * self.seq_len
            self.cos[n].update(cos.sum(dim=0).to(self.device), tokens)
            self.angle[n].update(ang.sum(dim=0).to(self.device), tokens)

    def finalize(self) -> dict[str, torch.Tensor]:
        """Named float32 tensors as documented in ``analysis.importance.results`` (before depth metrics).

        The one place statistics leave the device: everything returned is on the CPU, so metrics,
        summaries and writers never see an accelerator tensor.
        """
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
        return {k: v.cpu() for k, v in out.items()}

    def _stats(self) -> dict:
        """Every running statistic by name: agg.<kind>, cos.<n>, angle.<n>."""
        return ({f"agg.{k}": v for k, v in self.agg.items()} | {f"cos.{n}": v for n, v in self.cos.items()}
                | {f"angle.{n}": v for n, v in self.angle.items()})

    def sample_rows(self) -> dict[str, torch.Tensor]:
        """Per-sample sequence means by kind, (N, ...) in fold order; empty without ``per_sample``."""
        if self.samples is None:
            return {}
        return {k: torch.cat(v) if v else torch.zeros(0, *self.agg[k].mean.select(-2, SEQ_MEAN).shape)
                for k, v in self.samples.items()}

    def state(self) -> dict[str, torch.Tensor]:
        """Every running statistic as flat names -> tensors (checkpoints as safetensors, rank merging)."""
        stats = {f"{name}.{field}": t for name, stat in self._stats().items() for field, t in stat.state().items()}
        return stats | {f"samples.{k}": v for k, v in self.sample_rows().items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore ``state()``; a state of another shape or other block sizes is refused."""
        if set(state) != set(self.state()):
            raise ValueError("collector state does not match this model, these block sizes and per-sample setting")
        for name, stat in self._stats().items():
            stat.load_state({field: state[f"{name}.{field}"].to(self.device) for field in stat.state()})
        if self.samples is not None:
            self.samples = {k: [state[f"samples.{k}"].float().cpu()] for k in self.samples}

    def merge(self, other: Collector) -> None:
        """Fold another collector in (another rank's share of the batches); as if one stream.

        Per-sample rows are appended in merge (rank) order.
        """
        theirs = other._stats()
        for name, stat in self._stats().items():
            stat.merge(theirs[name])
        if self.samples is not None:
            for k, rows in other.sample_rows().items():
                self.samples[k].append(rows)
