"""Typed card data, built from the registry or a model directory plus the latest analysis run.

Templates only format what is here; nothing in a card is typed by hand except our prose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from analysis.core.errors import MinitronError
from analysis.core.io import read_json
from analysis.importance.results import RunResult, latest_run, load_run
from analysis.models.loading import directory_fingerprint
from analysis.models.registry import MODELS, Architecture, EvalResult, ModelSpec, lookup
from cards.facts import PublishedFacts, facts_for
from cards.measured import Measured, measured_for

PRUNE_RECIPE = "prune_recipe.json"
DISTILL_RECORD = "distill.json"
ACTIVATIONS = {"relu2": "squared ReLU", "silu": "SiLU (gated)", "gelu": "GELU"}
NORMS = {"layernorm1p": "LayerNorm1P (weight + 1, with bias)", "rmsnorm": "RMSNorm"}
FAMILY_TAGS = ("nvidia", "minitron", "nemotron", "pruning", "distillation", "pytorch")

# (Architecture field or params key, table label). ``cards.check`` parses these labels back.
ARCH_ROWS: tuple[tuple[str, str], ...] = (
    ("family", "model type (transformers)"), ("layers", "layers"), ("hidden", "hidden size (embedding channels)"),
    ("heads", "attention heads"), ("kv_heads", "key/value heads (GQA groups)"), ("head_dim", "head dimension"),
    ("mlp", "MLP intermediate size"), ("vocab", "vocabulary size"), ("activation", "MLP activation"),
    ("norm", "normalization"), ("rotary_fraction", "rotary share of head dimension"), ("rope_theta", "RoPE theta"),
    ("max_positions", "context length (positions)"), ("tied_embeddings", "tied input/output embeddings"),
    ("params_total", "parameters, total"), ("params_non_embedding", "parameters, non-embedding"),
)


@dataclass
class Row:
    label: str
    value: str


@dataclass
class Figure:
    name: str  # file stem, e.g. "layer_sensitivity"
    caption: str
    path: str  # relative to the card directory, e.g. "figures/layer_sensitivity.png"


@dataclass
class RunSummary:
    """The numbers and provenance of one analysis run, as a card shows them."""

    path: str
    run_id: str
    created: str
    model_ref: str
    weights: str  # fingerprint
    dtype: str
    device: str
    data: dict  # source, protocol, config, hashes
    eval: dict  # loss, perplexity, tokens_scored, protocol
    layers: list[dict]  # per-layer rows of metrics.json
    least_important: list[int]  # layers whose removal hurts least (by drop loss)
    most_important: list[int]
    best_blocks: list[dict]  # per block size: start of the cheapest block to drop and its loss
    spearman: float | None  # Block Importance vs drop-one-layer loss
    versions: dict
    total_s: float | None
    architecture: dict = field(default_factory=dict)  # shape of the analysed model
    figures: list[Figure] = field(default_factory=list)
    weights_note: str = ""  # how the analysed weights were stored (a quantized GGUF), when not plain floats
    stability: dict | None = None  # ranking stability (analyze --bootstrap), condensed for one line


@dataclass
class PruneInfo:
    """prune_recipe.json written next to config.json by the pruning step."""

    teacher: str
    teacher_params: int
    params: int
    target: dict
    depth_metric: str
    aggregation: str
    ppl_before: float | None = None
    ppl_after: float | None = None
    ppl_data: dict | None = None  # which windows the perplexities were measured on
    teacher_weights: dict | None = None  # the teacher's source format (a quantized GGUF), if recorded
    head_merge: dict | None = None  # analysis.pruning.merge.describe(): enabled, applied, pairs or reason


@dataclass
class DistillInfo:
    """distill.json of a distilled model directory: what training ran and what it measured."""

    mode: str  # distill, finetune or distill+clm
    steps: int
    tokens_seen: int
    teacher: str  # the teacher's name
    before: dict  # held-out loss, ppl, kl before training
    after: dict  # ... after the last step
    seq_len: int
    eval_windows: int
    data_source: str

    @property
    def teacher_ppl(self) -> float:
        """The teacher's held-out perplexity on the same windows, exp(teacher loss)."""
        import math

        return math.exp(self.after["teacher_loss"])


@dataclass
class CardData:
    """Everything a model card says, typed."""

    name: str  # registry name or directory name; cards/out/<name>/
    display_name: str
    arch: Architecture
    role: str = "model"  # teacher, student, follow-up, default, pruned, model
    hf_id: str | None = None
    usage_path: str = ""  # what from_pretrained gets in the usage snippet
    description: str = ""
    license: str = ""
    license_link: str = ""
    teacher: ModelSpec | None = None
    teacher_name: str = ""
    training_tokens: str = ""
    paper: str = ""
    evals: list[EvalResult] = field(default_factory=list)
    measured: list[Measured] = field(default_factory=list)  # evaluate runs of this model (and its teacher's)
    facts: PublishedFacts | None = None
    analysis: RunSummary | None = None
    prune: PruneInfo | None = None
    figures: list[Figure] = field(default_factory=list)  # family figures (registry models only)
    tags: list[str] = field(default_factory=list)
    source_dir: Path | None = None  # model directory the card was built from
    distill: DistillInfo | None = None  # distill.json of a distilled directory
    instruct: bool = False  # the model itself was instruction-tuned by its authors
    from_instruct: bool = False  # cut (and maybe distilled) from an instruction-tuned model
    weights_note: str = ""  # how the weights this card describes were stored, when quantized

    @property
    def tuning(self) -> str:
        """base, instruct, or derived (cut from an instruction-tuned model: whether it still follows
        instructions was not measured)."""
        return "instruct" if self.instruct else ("derived" if self.from_instruct else "base")

    @property
    def params(self) -> dict[str, int]:
        return self.arch.params()

    @property
    def arch_rows(self) -> list[Row]:
        """The architecture table, generated from ``arch``."""
        return [Row(label, _arch_value(self.arch, key)) for key, label in ARCH_ROWS]

    @property
    def base_model(self) -> str | None:
        """The teacher's Hugging Face id (students); None when the teacher has none."""
        return self.teacher.hf_id if self.teacher else None

    @property
    def run_mismatch(self) -> list[str]:
        """Shape fields where the analysed model differs from the card's architecture (say so, never hide it)."""
        if not self.analysis:
            return []
        ran = self.analysis.architecture
        return [f"{k} {ran[k]} (card: {getattr(self.arch, k)})" for k in ("layers", "hidden", "heads", "kv_heads", "mlp")
                if k in ran and ran[k] != getattr(self.arch, k)]

    @property
    def shot_differences(self) -> list[Row]:
        """Benchmarks whose shots the published card states differently from the paper (label: task)."""
        stated = self.facts.card_shots if self.facts else {}
        def called(shots: int) -> str:
            return '"zero-shot"' if shots == 0 else f"{shots}-shot"

        return [Row(e.task, f"{e.shots}-shot {e.metric} in {e.source}; {called(stated[e.benchmark])} in the published card")
                for e in self.evals if e.benchmark in stated and stated[e.benchmark] != e.shots]

    @property
    def head_difference(self) -> dict | None:
        """The published card's head count when it disagrees with the architecture, and what it would imply."""
        heads = self.facts.card_heads if self.facts else None
        if heads is None or heads == self.arch.heads:
            return None
        implied = self.arch.replace(heads=heads).params()["total"]
        return {"card": heads, "ours": self.arch.heads, "implied_params": f"{implied / 1e9:.3f}B",
                "params": f"{self.params['total'] / 1e9:.3f}B"}

    @property
    def shrink(self) -> list[Row]:
        """How far each width axis shrank relative to the teacher (students only)."""
        if not self.teacher:
            return []
        t = self.teacher.arch
        return [Row(label, f"{getattr(self.arch, key):,} of {getattr(t, key):,}"
                    + (" (unchanged)" if getattr(self.arch, key) == getattr(t, key) else ""))
                for key, label in (("hidden", "embedding channels"), ("heads", "attention heads"),
                                   ("mlp", "MLP neurons"), ("layers", "layers"))]


def _arch_value(a: Architecture, key: str) -> str:
    if key.startswith("params_"):
        n = a.params()[key.removeprefix("params_")]
        return f"{n:,} ({n / 1e9:.3f}B)"
    v = getattr(a, key)
    if key == "activation":
        return f"{ACTIVATIONS.get(v, v)} (`{v}`)"
    if key == "norm":
        return NORMS.get(v, v)
    if key == "rotary_fraction":
        return f"{v:.0%}"
    if key == "tied_embeddings":
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}" if key in ("vocab", "max_positions") else str(v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def quantization_note(source_format: dict | None, whose: str = "its") -> str:
    """One sentence on weights read from a quantized GGUF (from the provenance record), '' otherwise."""
    import re

    if not isinstance(source_format, dict) or not source_format.get("quantization"):
        return ""
    q = source_format["quantization"]
    types = source_format.get("tensor_types") or {}
    bits = re.match(r"[IQ]+(\d)", q)
    share = f"{types[q]} of its {sum(types.values())} tensors are" if q in types else "its tensors are"
    return (f"Minitron Lab reads {whose} weights from the GGUF file {source_format.get('file', '')}, where {share} "
            f"stored as {q}{f' ({bits.group(1)}-bit)' if bits else ''}, and dequantizes them to "
            f"{source_format.get('dequantized_to', 'float32')}: every number measured on them is that of the "
            "quantized model, not of the original release")


def summarize_run(run: RunResult) -> RunSummary:
    """The card's view of an analysis run: headline numbers, ranked layers, provenance.

    A run made without sensitivity has no drop losses: its layer ranking is left empty, not invented.
    """
    m = run.metrics
    layers = m.get("layers", [])
    by_drop = sorted((r for r in layers if "drop_loss" in r), key=lambda r: r["drop_loss"])
    best = []
    for size, b in sorted(m.get("blocks", {}).items(), key=lambda kv: int(kv[0])):
        if b.get("loss"):
            i = min(range(len(b["loss"])), key=b["loss"].__getitem__)
            best.append({"size": int(size), "start": b["start"][i], "loss": b["loss"][i]})
    return RunSummary(
        path=str(run.path), run_id=m.get("run_id", run.path.name), created=m.get("created", ""),
        model_ref=m["model"].get("ref", ""), weights=m["model"].get("weights_fingerprint", ""),
        dtype=m["model"].get("dtype", ""), device=m["model"].get("device", ""), data=m.get("data", {}),
        eval=m.get("eval", {}), layers=layers, least_important=[r["layer"] for r in by_drop[:3]],
        most_important=[r["layer"] for r in by_drop[::-1][:3]], best_blocks=best,
        spearman=m.get("rank_agreement", {}).get("spearman_bi_vs_drop_loss"),
        versions=m.get("versions", {}), total_s=m.get("timings", {}).get("total_s"),
        architecture=m.get("architecture", {}), weights_note=quantization_note(m["model"].get("source_format")),
        stability=stability_summary(m.get("bootstrap")),
    )


def stability_summary(b: dict | None) -> dict | None:
    """The bootstrap section as the card's one line: per target, each axis's Jaccard mean and interval."""
    if not b:
        return None
    targets = {}
    for axis, a in b["axes"].items():
        for target, k in a["kept"].items():
            if k["jaccard"] is not None:
                targets.setdefault(target, []).append({"axis": axis, "keep": k["keep"], "of": k["of"]} | k["jaccard"])
    settled = [f"{axis} at {t} from {n}" for axis, per in b["stable_at"].items() for t, n in per.items() if n]
    unsettled = [f"{axis} at {t}" for axis, per in b["stable_at"].items() for t, n in per.items() if not n]
    targets = dict(sorted(targets.items(), key=lambda kv: -float(kv[0].rstrip("B"))))  # 8B before 4B
    return {"iters": b["iters"], "samples": b["samples"], "threshold": b["threshold"], "targets": targets,
            "settled": settled, "unsettled": unsettled}


def from_spec(spec: ModelSpec, runs_root: str | Path = "runs", run: RunResult | None = None) -> CardData:
    """Card data of a registry model, with its latest analysis run under ``runs_root`` if any."""
    teacher = lookup(spec.teacher) if spec.teacher else None
    run = run or latest_run(spec.name, runs_root)
    family = spec.role in ("teacher", "student")
    return CardData(
        name=spec.name, display_name=spec.display_name or spec.name, arch=spec.arch, role=spec.role,
        hf_id=spec.hf_id, usage_path=spec.hf_id or f"/path/to/{spec.name}", description=spec.description,
        license=spec.license, license_link=spec.license_link, teacher=teacher,
        teacher_name=teacher.display_name if teacher else "", training_tokens=spec.training_tokens,
        paper=spec.paper, evals=list(spec.evals), facts=facts_for(spec.name),
        measured=measured_for(runs_root, spec.name, None, list(spec.evals), teacher.name if teacher else None),
        analysis=summarize_run(run) if run else None,
        tags=list(FAMILY_TAGS if family else ("minitron-lab", "pytorch")),
        instruct=spec.instruct, from_instruct=bool(teacher and teacher.instruct),
        weights_note=_registry_weights_note(spec),
    )


def _registry_weights_note(spec: ModelSpec) -> str:
    """How Minitron Lab reads a registry model's weights, when that is a quantized GGUF."""
    if not spec.gguf:
        return ""
    from analysis.models.gguf_cache import gguf_source, locate_gguf

    try:
        return quantization_note(gguf_source(locate_gguf(spec)))
    except MinitronError:  # package not installed: the card still says what the registry ships
        return (f"Minitron Lab reads its weights from {spec.gguf.split(':')[1]} (a quantized GGUF, per its file "
                "name) and dequantizes them to float32")


def read_recipe(model_dir: Path) -> PruneInfo | None:
    """prune_recipe.json of a pruned model directory, or None."""
    path = model_dir / PRUNE_RECIPE
    if not path.exists():
        return None
    raw = read_json(path, "prune recipe")
    try:
        return PruneInfo(**{k: raw.get(k) for k in PruneInfo.__dataclass_fields__})
    except (TypeError, AttributeError) as exc:
        raise MinitronError(f"{path}: not a valid prune recipe ({type(exc).__name__}: {exc})") from None


def read_distill(model_dir: Path) -> DistillInfo | None:
    """distill.json of a distilled model directory (written by ``distill``), or None."""
    path = model_dir / DISTILL_RECORD
    if not path.exists():
        return None
    raw = read_json(path, "distillation record")
    try:
        cfg, final = raw["config"], raw["final"]
        return DistillInfo(mode=raw["mode"], steps=int(cfg["steps"]), tokens_seen=int(raw["tokens_seen"]),
                           teacher=(raw.get("teacher") or {}).get("name", "the teacher"), before=final["before"],
                           after=final["after"], seq_len=int(cfg["seq_len"]), eval_windows=int(cfg["eval_samples"]),
                           data_source=(raw.get("data") or {}).get("source", "?"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MinitronError(f"{path}: not a valid distillation record ({type(exc).__name__}: {exc})") from None


def read_architecture(model_dir: Path) -> Architecture:
    """The Architecture of a model directory's config.json."""
    from transformers import AutoConfig

    from analysis.models.configs import from_hf_config

    if not (model_dir / "config.json").exists():
        raise MinitronError(f"{model_dir}: not a model directory (no config.json)")
    from analysis.models.checks import check_config

    check_config(model_dir / "config.json")
    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise MinitronError(f"{model_dir}/config.json: unreadable ({str(exc).splitlines()[0]})") from None
    try:
        return from_hf_config(config)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise MinitronError(f"{model_dir}/config.json: not a decoder config this toolkit reads "
                            f"({type(exc).__name__}: {exc})") from None


def from_directory(model_dir: str | Path, runs_root: str | Path = "runs", final: str | Path | None = None) -> CardData:
    """Card data of a local (e.g. pruned, distilled) model directory from config.json, prune_recipe.json
    and distill.json. ``final`` names the directory's eventual location when ``model_dir`` is a staging copy.
    """
    model_dir = Path(model_dir).resolve()
    home = Path(final).resolve() if final else model_dir
    arch, recipe, trained = read_architecture(model_dir), read_recipe(model_dir), read_distill(model_dir)
    teacher_name = recipe.teacher if recipe and recipe.teacher else (trained.teacher if trained else "")
    teacher = lookup(teacher_name) if teacher_name else None
    run = latest_run(home.name, runs_root)
    licence = teacher.license if teacher else ""
    weights = (recipe.teacher_weights if recipe else None) or _distill_teacher_weights(model_dir)
    return CardData(
        name=_directory_name(home), display_name=_directory_name(home), arch=arch, role="pruned" if recipe else "model",
        usage_path=str(home), license=licence, license_link=teacher.license_link if teacher else "",
        teacher=teacher, teacher_name=(teacher.display_name if teacher else teacher_name),
        description=_directory_description(recipe, trained, arch), prune=recipe, distill=trained,
        analysis=summarize_run(run) if run else None,
        measured=measured_for(runs_root, None, directory_fingerprint(model_dir), [],
                              teacher.name if teacher else (teacher_name or None)),
        tags=["minitron-lab", "pruned" if recipe else "local", *(["distilled"] if trained else []), "pytorch"],
        source_dir=home, from_instruct=bool(teacher and teacher.instruct),
        weights_note=quantization_note(weights, "the teacher's"),
    )


def _distill_teacher_weights(model_dir: Path) -> dict | None:
    path = model_dir / DISTILL_RECORD
    if not path.exists():
        return None
    return (read_json(path, "distillation record").get("teacher") or {}).get("source_format")


def _directory_name(home: Path) -> str:
    """The directory's name; ``distill`` writes every model to ``<run>/model``, so that one is named by its run."""
    return f"{home.parent.name}-{home.name}" if home.name == "model" and home.parent.name else home.name


def _directory_description(recipe: PruneInfo | None, trained: DistillInfo | None, arch: Architecture) -> str:
    if recipe is None:
        text = "A local decoder checkpoint described from its config.json."
    else:
        params = recipe.params or arch.params()["total"]  # a hand-made recipe may omit the count
        text = f"{recipe.teacher or 'A teacher'} pruned by Minitron Lab to {params / 1e6:,.1f}M parameters."
    if trained and recipe is None:  # a pruned card's overview says it next to the pruning
        how = "fine-tuned on next-token prediction" if trained.mode == "finetune" else "healed by logit distillation"
        text += f" Then {how} from {trained.teacher} for {trained.steps} steps ({trained.tokens_seen:,} tokens)."
    return text


def build(model: str, runs_root: str | Path = "runs") -> CardData:
    """Card data for a registry name/alias, a model directory, or an analysis run directory."""
    path = Path(model).expanduser()
    if path.is_dir() and (path / "metrics.json").exists():  # a run: card of the model it analysed
        run = load_run(path)
        spec = lookup(run.metrics["model"].get("name", "")) or lookup(run.metrics["model"].get("ref", ""))
        if spec is None:
            raise MinitronError(f"{path}: the analysed model '{run.model_name}' is not in the registry; "
                                "pass its model directory instead")
        return from_spec(spec, runs_root, run=run)
    if path.is_dir():
        return from_directory(path, runs_root)
    spec = lookup(model)
    if spec is None:
        valid = ", ".join(s.aliases[0] if s.aliases else s.name for s in MODELS)
        raise MinitronError(f"unknown model '{model}': not a registry name ({valid}) nor a model directory")
    return from_spec(spec, runs_root)
