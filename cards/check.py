"""Check a card's architecture claims against the registry or a config.json.

Claims come from two places: prose ("an embedding size of 3072, 32 attention heads") attributed to
the model named nearest before the number, and our own architecture table (``cards.data.ARCH_ROWS``)
attributed to the card's model. Every disagreement is reported; none is fatal on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from analysis.core.errors import MinitronError
from analysis.models.registry import MODELS, Architecture, lookup
from cards.data import ARCH_ROWS, read_architecture

NUM = r"(\d[\d,]*)"
# Prose patterns per Architecture field; the number is group 1.
PATTERNS: dict[str, tuple[str, ...]] = {
    "hidden": (rf"(?:embedding|hidden|model) (?:size|dimension|width)(?: of| is| =|:)?\s*{NUM}",),
    "heads": (rf"{NUM}\s+(?:query\s+)?attention heads", rf"attention heads(?: of| is| =|:)\s*{NUM}"),
    "kv_heads": (rf"{NUM}\s+(?:key[-/ ]value heads|KV heads|query groups|GQA groups)",),
    "mlp": (rf"(?:MLP|FFN|feed-forward)(?: intermediate)? (?:dimension|size|width)(?: of| is| =|:)?\s*{NUM}",),
    "layers": (rf"(?<!block of )(?<!blocks of )(?<!drop ){NUM}\s+(?:transformer |decoder )?layers\b",),
    "vocab": (rf"vocabulary(?: size)?(?: of| is| =|:)\s*{NUM}",),
    "head_dim": (rf"head (?:dimension|size)(?: of| is| =|:)\s*{NUM}",),
}
TABLE_FIELDS = {label: key for key, label in ARCH_ROWS}
INT_FIELDS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "mlp", "vocab", "max_positions")


@dataclass
class Claim:
    line: int  # 1-based line in the card
    model: str  # registry name, or "config" for a directory's config.json
    field: str  # Architecture field or params_total / params_non_embedding
    value: int
    text: str  # the sentence or table row


@dataclass
class Disagreement:
    claim: Claim
    actual: int

    def __str__(self) -> str:
        c = self.claim
        return (f"line {c.line}: {c.model} {c.field.replace('_', ' ')}: the card says {c.value:,}, "
                f"the architecture has {self.actual:,}  [{c.text.strip()[:90]}]")


def _names() -> list[tuple[str, str]]:
    """(lower-case name as written in prose, registry name), longest first so '4B-Base' beats '4B'."""
    pairs = []
    for m in MODELS:
        for n in {m.name, m.display_name, m.hf_id or "", *(a for a in m.aliases if len(a) > 3)}:
            if n:
                pairs.append((n.lower(), m.name))
    return sorted(pairs, key=lambda p: -len(p[0]))


def _mentions(text: str) -> list[tuple[int, str]]:
    """(position, registry name) of every model named in ``text``, without overlapping shorter names."""
    low, found, taken = text.lower(), [], set()
    for name, reg in _names():
        for m in re.finditer(re.escape(name), low):
            span = set(range(m.start(), m.end()))
            if not span & taken:
                taken |= span
                found.append((m.start(), reg))
    return sorted(found)


def _int(s: str) -> int:
    return int(s.replace(",", ""))


def _sentence_claims(n: int, sentence: str, default: str | None) -> list[Claim]:
    names, claims = _mentions(sentence), []
    for field, patterns in PATTERNS.items():
        for pattern in patterns:
            for m in re.finditer(pattern, sentence, flags=re.IGNORECASE):
                before = [reg for pos, reg in names if pos < m.start(1)]
                model = before[-1] if before else (names[0][1] if names else default)
                if model:
                    claims.append(Claim(n, model, field, _int(m.group(1)), sentence))
    return claims


def prose_claims(text: str, default: str | None) -> list[Claim]:
    """Claims in sentences, attributed to the last model named before the number (else ``default``)."""
    claims = []
    in_code = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        if in_code or line.lstrip().startswith("|"):
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", line):
            claims += _sentence_claims(n, sentence, default)
    return claims


def table_claims(text: str, model: str | None) -> list[Claim]:
    """Claims in our architecture table rows ``| label | value |`` (attributed to the card's model)."""
    claims = []
    for n, line in enumerate(text.splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if model and len(cells) == 2 and cells[0] in TABLE_FIELDS:
            field, m = TABLE_FIELDS[cells[0]], re.match(NUM, cells[1])
            if m and (field in INT_FIELDS or field.startswith("params_")):
                claims.append(Claim(n, model, field, _int(m.group(1)), line))
    return claims


def _actual(arch: Architecture, field: str) -> int:
    if field.startswith("params_"):
        return arch.params()[field.removeprefix("params_")]
    return getattr(arch, field)


def _by_name(name: str):
    """Registry entry for a name, alias, HF id or display name."""
    return lookup(name) or next((m for m in MODELS if (m.display_name or "").lower() == name.lower()), None)


def card_model(text: str, path: Path, model: str | None) -> tuple[str | None, Architecture | None]:
    """The model unattributed claims belong to: --model, a config.json beside the card, or the card's title."""
    if model:
        p = Path(model)
        if p.is_dir():
            return "config", read_architecture(p)
        spec = lookup(model)
        if spec is None:
            raise MinitronError(f"unknown model '{model}' for --check; pass a registry name or a model directory")
        return spec.name, spec.arch
    if (path.parent / "config.json").exists():
        return "config", read_architecture(path.parent)
    body = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.DOTALL)  # front matter may hold YAML comments
    title = re.search(r"^# (.+)$", body, flags=re.MULTILINE)
    spec = _by_name(title.group(1).strip()) if title else None
    return (spec.name, spec.arch) if spec else (None, None)


def check_card(path: str | Path, model: str | None = None) -> tuple[list[Claim], list[Disagreement]]:
    """All architecture claims of a card and those that disagree with the registry/config."""
    path = Path(path)
    if not path.is_file():
        raise MinitronError(f"{path}: no such card file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MinitronError(f"{path}: not a UTF-8 text file") from None
    default, default_arch = card_model(text, path, model)
    claims = prose_claims(text, default) + table_claims(text, default)
    bad = []
    for c in claims:
        arch = default_arch if c.model == "config" else lookup(c.model).arch
        if _actual(arch, c.field) != c.value:
            bad.append(Disagreement(c, _actual(arch, c.field)))
    return claims, bad
