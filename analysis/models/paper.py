"""Published numbers from the Minitron paper that are not properties of one registry model.

Everything here is transcribed from arXiv:2407.14679 (Compact Language Models via Pruning and
Knowledge Distillation); each table names its source so figures and cards can cite it.
The Minitron family's own numbers live in ``analysis.models.registry``; these add the peers.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.models.registry import PAPER, get

FIGURE1 = f"{PAPER} Figure 1"
TABLE2 = f"{PAPER} Table 2"
AGGREGATION_TABLE = f"{PAPER} Table 11"  # aggregation of importance, zero-shot loss at the study target
AXES_TABLE = f"{PAPER} Table 1"  # pruning axes to ~8B, loss after ~1.8B tokens of distillation


@dataclass(frozen=True)
class TokensPoint:
    """One model in the MMLU-vs-training-tokens scatter (paper Figure 1)."""

    model: str  # display name
    mmlu: float  # MMLU 5-shot accuracy, percent
    tokens: float  # training tokens (for Minitron: distillation tokens only)
    at_least: bool = False  # the paper gives a lower bound (">15T")
    minitron: bool = False  # one of the Minitron family (teacher or student)


TOKENS_VS_MMLU: tuple[TokensPoint, ...] = (
    TokensPoint("Nemotron-4 15B", 66.6, 8e12, minitron=True),
    TokensPoint("Llama-3 8B", 65.3, 15e12, at_least=True),
    TokensPoint("Mistral 7B", 64.1, 8e12),
    TokensPoint("Gemma 7B", 64.0, 6e12),
    TokensPoint("Minitron 8B", 63.8, 94e9, minitron=True),
    TokensPoint("Minitron 4B", 58.6, 94e9, minitron=True),
    TokensPoint("Phi-2", 57.5, 1.4e12),
    TokensPoint("Nemotron-3 8B", 54.7, 3.8e12),
    TokensPoint("Llama-2 7B", 46.0, 2e12),
    TokensPoint("Gemma 2B", 42.0, 3e12),
)

# Benchmark columns of the comparison table, in the paper's order (registry BENCHMARKS keys).
BENCHMARK_ORDER = ("winogrande", "arc_c", "mmlu", "hellaswag", "gsm8k", "triviaqa", "xlsum", "mbpp", "humaneval")

# Peers of the comparison table (values in percent, BENCHMARK_ORDER); the family comes from the registry.
PEERS: dict[str, tuple[float, ...]] = {
    "Llama-3 8B": (77.6, 57.8, 65.3, 82.1, 50.3, 43.9, 30.9, 42.4, 28.1),
    "Mistral 7B": (78.5, 60.3, 64.1, 83.2, 37.0, 42.6, 4.8, 38.8, 28.7),
    "Gemma 7B": (78.0, 61.0, 64.0, 82.0, 50.0, 45.0, 17.0, 39.0, 32.0),
}

# Zero-shot LM loss after pruning Nemotron-4 15B to the 8B shape, by aggregation (batch, sequence):
# (8T-blend, WikiText2). The paper's choice is batch=L2, sequence=mean.
AGGREGATION_LOSS: dict[tuple[str, str], tuple[float, float]] = {
    ("l2", "l2"): (8.73, 8.37), ("l2", "mean"): (7.18, 7.23), ("l2", "var"): (8.18, 8.61),
    ("mean", "l2"): (8.41, 7.84), ("mean", "mean"): (7.21, 6.89), ("mean", "var"): (7.94, 8.29),
    ("var", "l2"): (9.01, 9.30), ("var", "mean"): (8.34, 8.72), ("var", "var"): (10.55, 11.14),
}

# The shape the paper's ablations prune Nemotron-4 15B to (the aggregation study and the pruning-axes
# table): the Nemotron-3 8B architecture. Unlike Minitron 8B it prunes attention heads too (48 -> 32).
STUDY_TARGET = {"layers": 32, "hidden": 4096, "heads": 32, "mlp": 16384}

# Pruning axes, Nemotron-4 15B -> ~8B, LM validation loss after ~1.8B tokens of distillation. Keys are
# the rows of ``analysis.experiments.studies.PAPER_AXES``. The depth-only model keeps 16 of 32 layers
# (9.39B); width prunes MLP, heads and embedding to the study target (7.74B). The Block Importance
# row comes from the paper's comparison of depth metrics on that same depth-only model.
AXES_LOSS: dict[str, float] = {
    "width (mlp+heads+channels)": 2.049, "width (mlp+heads)": 2.101, "depth+width": 2.062,
    "depth (drop loss)": 2.155, "depth (BI)": 2.177,
}

# Other structured-pruning methods vs Minitron 8B, 8B-class students: (MMLU, HellaSwag), percent.
PRUNING_METHODS: dict[str, tuple[float, float]] = {
    "LLM-Pruner": (25.2, 67.8), "SliceGPT": (37.1, 55.7), "LaCo": (45.9, 64.4), "ShortGPT": (54.7, 66.6),
    "Minitron 8B": (63.8, 80.7),
}


MINITRON_TARGETS = ("8B", "4B")  # the published students; ``study`` is the ablations' shape


def width_targets() -> dict[str, dict[str, float]]:
    """The paper's width targets as fractions of the teacher's widths, computed from the registry.

    8B keeps 4096/6144 channels, 16384/24576 neurons, 48/48 heads; 4B keeps 3072/6144, 9216/24576, 24/48;
    ``study`` (the ablations' Nemotron-3 8B shape, ``STUDY_TARGET``) keeps 4096/6144, 16384/24576, 32/48.
    """
    teacher = get("15B").arch
    shapes = {alias: get(alias).arch for alias in ("8B", "4B")}
    shapes["study"] = teacher.replace(**STUDY_TARGET)
    return {name: {"hidden": a.hidden / teacher.hidden, "mlp": a.mlp / teacher.mlp, "heads": a.heads / teacher.heads,
                   "layers": a.layers / teacher.layers} for name, a in shapes.items()}
