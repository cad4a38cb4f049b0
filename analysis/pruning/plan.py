"""Minitron-style structured pruning: targets, validation and ranking (pure functions).

The recipe (arXiv 2407.14679 §2, Model Optimizer's ``mcore_minitron``):
  * embedding channels: ONE kept set for the whole network, ranked by the network-wide channel
    score; kept indices stay in ascending order so the residual stream keeps its layout;
  * attention: query heads are ranked inside each GQA group and every group of every layer keeps
    the same count; key/value heads are all kept; by default the pruned heads are merged into the
    kept ones (the paper's head residual merging, ``analysis.pruning.merge``);
  * MLP: neurons ranked per layer, every layer keeps the same count;
  * depth: keep the layers scoring highest by block importance (``bi``) or by the LM loss measured
    with the layer removed (``drop-loss``: dropping the layers whose removal hurts least), or remove
    the one contiguous block of layers whose removal hurts least (``block``, the follow-up paper's
    choice for Llama-3.1-Minitron-4B-Depth; needs the run's loss for that block size).

Building the smaller model from a ``PrunePlan`` lives in ``analysis.pruning.surgery``; writing it to disk in
``analysis.pruning.export``. Nothing here touches module paths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from analysis.core import validate as V
from analysis.core.errors import MinitronError
from analysis.models.registry import Architecture, get
from analysis.pruning.merge import merge_pairs
from analysis.pruning.ranking import (
    cheapest_block,
    head_order,
    rank_channels,
    rank_heads,
    rank_layers,
    rank_neurons,
)

# CLI name -> run tensor ("block": drop_block_loss.n<k>, with k the number of layers removed)
DEPTH_METRICS = {"bi": "block_importance", "drop-loss": "drop_layer_loss", "block": "drop_block_loss"}


@dataclass(frozen=True)
class PruneTarget:
    """Requested student shape; None keeps the teacher's size on that axis."""

    hidden: int | None = None  # embedding channels kept (network-wide)
    ffn: int | None = None  # MLP neurons kept per layer
    heads: int | None = None  # query heads kept per layer (multiple of the kv heads)
    layers: int | None = None  # decoder layers kept

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Importance:
    """Scores that rank each axis; higher = more important. Any may be None (keep leading indices)."""

    channels: torch.Tensor | None = None  # [D]
    heads: torch.Tensor | None = None  # [L, H]
    neurons: torch.Tensor | None = None  # [L, F]
    depth: torch.Tensor | None = None  # [L]
    blocks: dict[int, torch.Tensor] | None = None  # k -> [L-k+1] loss without layers s..s+k-1 (depth by block)


@dataclass
class PrunePlan:
    """What survives, as indices into the teacher (all sorted ascending)."""

    layers: list[int]  # kept teacher layers, in order
    channels: torch.Tensor  # [D'] kept embedding channels
    heads: dict[int, torch.Tensor]  # teacher layer -> [H'] kept query heads
    neurons: dict[int, torch.Tensor]  # teacher layer -> [F'] kept MLP neurons
    head_dim: int  # unchanged width of one head
    head_merge: dict[int, torch.Tensor] = field(default_factory=dict)  # teacher layer -> [P, 2] (kept, pruned) heads
    merge_note: str | None = None  # why no heads were merged (None when some were)


def target_from_registry(teacher: Architecture, name: str) -> PruneTarget:
    """The shape of a registry model (``--target 8B``) as a target for ``teacher``."""
    arch = get(name).arch
    if (arch.family, arch.vocab, arch.head_dim, arch.kv_heads) != (
        teacher.family, teacher.vocab, teacher.head_dim, teacher.kv_heads
    ):
        raise MinitronError(
            f"--target {name}: its family/vocab/head_dim/kv heads ({arch.family}, {arch.vocab}, "
            f"{arch.head_dim}, {arch.kv_heads}) differ from the teacher's ({teacher.family}, "
            f"{teacher.vocab}, {teacher.head_dim}, {teacher.kv_heads}); pruning cannot change them"
        )
    return PruneTarget(hidden=arch.hidden, ffn=arch.mlp, heads=arch.heads, layers=arch.layers)


def resolve_target(teacher: Architecture, target: PruneTarget) -> Architecture:
    """Validate ``target`` against ``teacher`` (before any work) and return the student shape."""
    sizes = {"hidden": (target.hidden, teacher.hidden), "ffn": (target.ffn, teacher.mlp),
             "heads": (target.heads, teacher.heads), "layers": (target.layers, teacher.layers)}
    for axis, (want, have) in sizes.items():
        if want is None:
            continue
        V.WIDTH.check(f"--{axis}", want)
        if want > have:
            raise MinitronError(f"--{axis} {want} exceeds the teacher's {have}; pruning only removes")
    heads = teacher.heads if target.heads is None else target.heads
    if heads % teacher.kv_heads:
        raise MinitronError(
            f"--heads {heads} is not a multiple of the {teacher.kv_heads} kv heads; every GQA group "
            f"keeps the same number of query heads (try {_nearest_multiple(heads, teacher.kv_heads)})"
        )
    return teacher.replace(hidden=_kept(target.hidden, teacher.hidden), mlp=_kept(target.ffn, teacher.mlp),
                           heads=heads, layers=_kept(target.layers, teacher.layers))


def _kept(want: int | None, have: int) -> int:
    return have if want is None else want


def check_prunes(teacher: Architecture, student: Architecture) -> None:
    """A prune command must remove something: a target equal to the teacher would write an unpruned copy."""
    if student == teacher:
        raise MinitronError(f"the target keeps the whole teacher (hidden {teacher.hidden}, ffn {teacher.mlp}, heads "
                            f"{teacher.heads}, layers {teacher.layers}); nothing would be pruned")


def check_exportable(student: Architecture) -> Architecture:
    """The installed transformers must accept the student's config, or the export could not be saved.

    Only exports need this: in-memory experiments may use any shape the modules can hold.

    Llama-family configs, for instance, require hidden % heads == 0 even with an explicit head_dim
    (Nemotron's do not: Minitron-8B has 4096 channels and 48 heads).
    """
    from analysis.models.configs import to_hf_config

    try:
        config = to_hf_config(student)
        if hasattr(config, "validate"):
            config.validate()
    except Exception as exc:  # noqa: BLE001 - any validator's complaint is a user error here
        reason = str(getattr(exc, "__cause__", None) or exc).strip().splitlines()[-1]
        raise MinitronError(f"transformers rejects the {student.family} student shape: {reason}") from None
    return student


def _nearest_multiple(n: int, k: int) -> int:
    return max(k, round(n / k) * k)


def _leading(count: int, keep: int) -> torch.Tensor:
    return torch.arange(keep) if keep <= count else torch.arange(count)


def _merge_plan(teacher: Architecture, student: Architecture, imp: Importance, layers: list[int],
                head_merge: bool) -> tuple[dict[int, torch.Tensor], str | None]:
    """Head-merge pairs per kept layer (``analysis.pruning.merge``), or none and the reason."""
    if not head_merge:
        return {}, "--no-head-merge"
    if student.heads == teacher.heads:
        return {}, "no heads pruned"
    if imp.heads is None:
        return {}, "no head scores: heads are kept by index, so there is no importance order to pair them by"
    order = head_order(imp.heads, teacher.kv_heads)  # (L, G, r)
    keep = student.heads // teacher.kv_heads
    return {i: merge_pairs(order[i], keep) for i in layers}, None


def _kept_layers(teacher: Architecture, student: Architecture, imp: Importance) -> list[int]:
    """Depth: the cheapest contiguous block removed (``imp.blocks``), the top-scoring layers, or the leading ones."""
    removed = teacher.layers - student.layers
    if imp.blocks is not None and removed:
        if removed not in imp.blocks:
            have = ", ".join(map(str, sorted(imp.blocks))) or "none"
            raise MinitronError(f"--depth-metric block removes {removed} layers, but the analysis run measured blocks "
                                f"of {have}; rerun analyze with --block-sizes including {removed}")
        return cheapest_block(imp.blocks[removed], teacher.layers, removed)
    return rank_layers(imp.depth, student.layers) if imp.depth is not None else list(range(student.layers))


def make_plan(teacher: Architecture, student: Architecture, imp: Importance, head_merge: bool = True) -> PrunePlan:
    """Rank every axis of ``teacher`` down to ``student`` (shape from ``resolve_target``).

    An axis without scores keeps its leading indices (used for random-init shape work). With
    ``head_merge`` the pruned heads are paired with kept ones for merging (needs head scores).
    """
    L, H, kv = teacher.layers, teacher.heads, teacher.kv_heads
    layers = _kept_layers(teacher, student, imp)
    channels = rank_channels(imp.channels, student.hidden) if imp.channels is not None \
        else _leading(teacher.hidden, student.hidden)
    if imp.heads is not None:
        head_idx = rank_heads(imp.heads, kv, student.heads)
    else:  # first r' heads of each group, so GQA stays consistent without scores
        r, r_new = H // kv, student.heads // kv
        head_idx = (torch.arange(kv).view(kv, 1) * r + torch.arange(r_new)).reshape(1, -1).expand(L, -1)
    neuron_idx = rank_neurons(imp.neurons, student.mlp) if imp.neurons is not None \
        else _leading(teacher.mlp, student.mlp).expand(L, -1)
    pairs, note = _merge_plan(teacher, student, imp, layers, head_merge)
    return PrunePlan(layers=layers, channels=channels,
                     heads={i: head_idx[i] for i in layers}, neurons={i: neuron_idx[i] for i in layers},
                     head_dim=teacher.head_dim, head_merge=pairs, merge_note=note)


def _check_scores(teacher: Architecture, imp: Importance) -> None:
    """Importance must come from a run of this very architecture."""
    expected = {"channels": (teacher.hidden,), "heads": (teacher.layers, teacher.heads),
                "neurons": (teacher.layers, teacher.mlp), "depth": (teacher.layers,)}
    for axis, shape in expected.items():
        t = getattr(imp, axis)
        if t is not None and tuple(t.shape) != shape:
            raise MinitronError(
                f"importance '{axis}' has shape {tuple(t.shape)} but the teacher needs {shape}; "
                "was the analysis run made on another model?"
            )
    for k, t in (imp.blocks or {}).items():
        if tuple(t.shape) != (teacher.layers - k + 1,):
            raise MinitronError(f"{k}-layer block losses have shape {tuple(t.shape)} but the teacher's "
                                f"{teacher.layers} layers need ({teacher.layers - k + 1},); was the run made on another model?")


def importance_from_run(run, aggregation: str, depth_metric: str) -> Importance:
    """Pick the tensors of an analysis run (``analysis.importance.results.RunResult``) for one recipe."""
    if depth_metric not in DEPTH_METRICS:
        raise MinitronError(f"unknown --depth-metric '{depth_metric}'; choose from {', '.join(DEPTH_METRICS)}")
    try:
        axes = {a: run.importance(a, aggregation) for a in ("channels", "heads", "neurons")}
    except KeyError:
        raise MinitronError(f"{run.path}: no '{aggregation}' aggregation in the run") from None
    if depth_metric == "block":
        prefix = f"{DEPTH_METRICS['block']}.n"
        blocks = {int(k.removeprefix(prefix)): t for k, t in run.tensors.items() if k.startswith(prefix)}
        return Importance(blocks=blocks, **axes)
    return Importance(depth=run.tensors.get(DEPTH_METRICS[depth_metric]), **axes)


def plan_for(teacher: Architecture, target: PruneTarget, imp: Importance,
             head_merge: bool = True) -> tuple[Architecture, PrunePlan]:
    """Validate, check the scores' shapes, rank: the student shape and its plan."""
    student = resolve_target(teacher, target)
    _check_scores(teacher, imp)
    scored = any(t is not None for t in (imp.channels, imp.heads, imp.neurons))
    if scored and imp.depth is None and imp.blocks is None and student.layers < teacher.layers:
        raise MinitronError("depth pruning needs layer scores; the analysis run has none for this metric")
    return student, make_plan(teacher, student, imp, head_merge)
