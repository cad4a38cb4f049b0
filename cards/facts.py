"""Facts stated in NVIDIA's published Minitron model card that are not architecture or scores.

Transcribed as data (dates, engines, data properties) so templates word them in our own prose;
architecture and evaluation numbers come from ``analysis.models.registry``, never from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HUB_URL = "https://huggingface.co"
PAPER_URL = "https://arxiv.org/abs/2407.14679"
SECURITY_URL = "https://www.nvidia.com/en-us/support/submit-security-vulnerability/"
MMLU_URL = "https://arxiv.org/abs/2009.03300"
HARNESS_URL = "https://github.com/EleutherAI/lm-evaluation-harness"
HUMANEVAL_URL = "https://github.com/openai/human-eval"


@dataclass(frozen=True)
class PublishedFacts:
    """What the developer published about a model beyond its shape and scores."""

    developer: str = "NVIDIA"
    intended_use: str = "research and development only"
    trained: str = ""  # when training ran
    architecture_type: str = "Transformer decoder (auto-regressive language model)"
    network: str = "Nemotron-4"
    attention: tuple[str, ...] = ("Grouped-Query Attention (GQA)", "Rotary Position Embeddings (RoPE)")
    pruned_axes: tuple[str, ...] = ()  # what pruning removed
    io: str = "text in (a string), text out (a string); no further input or output parameters"
    training_data: str = ""  # corpus used for distillation
    data_collection: str = "hybrid"
    labeling: str = "not applicable"
    data_languages: str = "English and multilingual natural language, plus source code"
    data_documents: tuple[str, ...] = ("web pages", "dialogue", "articles", "other written material")
    data_domains: tuple[str, ...] = ("legal", "math", "science", "finance")
    data_extras: str = ""  # what continued training added
    data_cutoff: str = ""  # freshness of the pre-training data
    inference_engine: str = "TensorRT-LLM"
    test_hardware: str = "NVIDIA A100"
    inference_dtypes: tuple[str, ...] = ("float16", "bfloat16")
    eval_links: dict = field(default_factory=lambda: {"MMLU": MMLU_URL, "zero-shot": HARNESS_URL,
                                                      "HumanEval": HUMANEVAL_URL})
    # Where the published card disagrees with the paper; the cards say so next to the paper's values.
    card_shots: dict = field(default_factory=dict)  # benchmark key -> shots the published card states
    card_heads: int | None = None  # attention heads the published card states


# The published card files MMLU under "5-shot", HumanEval under "0-shot" and HellaSwag, Winogrande,
# GSM8K, ARC-C and XLSum together under "zero-shot"; the paper's tables report 10, 5, 5, 25 and 3 shots.
CARD_SHOTS = {"mmlu": 5, "humaneval": 0, "hellaswag": 0, "winogrande": 0, "gsm8k": 0, "arc_c": 0, "xlsum": 0}

_STUDENT = {
    "card_shots": CARD_SHOTS,
    "trained": "between February and June 2024",
    "pruned_axes": ("embedding channels (hidden size)", "attention heads", "MLP intermediate neurons"),
    "training_data": "the continued pre-training corpus of Nemotron-4 15B",
    "data_extras": "a small share of question-answering and alignment-style data in the continued-training mix",
    "data_cutoff": "June 2023",
}

# Keyed by registry name. The published card names the pruned axes for the family as a whole; the
# cards compute from the registry how far each axis actually shrank for each student.
FACTS: dict[str, PublishedFacts] = {
    "minitron-8b": PublishedFacts(**_STUDENT, card_heads=48),
    "minitron-4b": PublishedFacts(**_STUDENT, card_heads=32),  # the paper's table and the count say 24
}


def source_url(source: str) -> str:
    """Where a published number can be checked: the Hugging Face page named in the source
    ("Minitron model card (nvidia/Minitron-4B-Base)"), else the paper."""
    import re

    page = re.search(r"\(([\w.-]+/[\w.-]+)\)", source)
    return f"{HUB_URL}/{page.group(1)}" if page and "model card" in source else PAPER_URL


def facts_for(name: str) -> PublishedFacts | None:
    """Published facts of a registry model, or None when the published card does not cover it."""
    return FACTS.get(name)
