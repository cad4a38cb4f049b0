"""Text sources and the deterministic sampling protocol.

Protocol (recorded in every result):
  1. Documents are read in a fixed order (default corpus: ``pydoc_data.topics`` in sorted key
     order; files: sorted paths, ``.txt`` whole, ``.jsonl`` one record per line, field ``text``).
  2. They are joined with a blank line and tokenized once, without special tokens.
  3. The token stream is cut into non-overlapping windows of ``seq_len`` tokens (tail dropped).
  4. Windows are permuted with ``torch.Generator().manual_seed(seed)``; the first
     ``eval_samples`` form the evaluation split, the next ``calib_samples`` the calibration split,
     so the two are disjoint and the evaluation split does not move when calibration size changes.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from analysis.core.errors import MinitronError

DEFAULT_SOURCE = "pydoc"
RANDOM_SOURCE = "random"  # uniform random token ids: speed and memory work without a tokenizer
SEPARATOR = "\n\n"


@dataclass
class DataConfig:
    """Which text, and how it is cut into samples."""

    source: str = DEFAULT_SOURCE  # "pydoc", "random", a .txt/.jsonl file or folder, or a dataset "name[:config][@split]"
    seq_len: int = 128  # tokens per sample
    calib_samples: int = 64  # samples for importance statistics
    eval_samples: int = 4  # held-out samples for perplexity and layer sensitivity
    seed: int = 0  # permutation of windows
    text_field: str = "text"  # field read from .jsonl records and datasets
    max_chars: int | None = None  # read at most this many characters (None: everything)


@dataclass
class Splits:
    calib: torch.Tensor  # (calib_samples, seq_len) token ids
    eval: torch.Tensor  # (eval_samples, seq_len) token ids
    meta: dict  # protocol, source, hashes and window indices


def pydoc_documents() -> list[str]:
    """Python's own documentation topics: always installed, a few hundred thousand characters."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def _file_documents(path: Path, field: str) -> list[str]:
    if path.suffix == ".jsonl":
        docs = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    docs.append(json.loads(line)[field])
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise MinitronError(f"{path}:{n}: not a JSON object with a '{field}' field") from None
        return docs
    return [path.read_text(encoding="utf-8", errors="replace")]


def _hf_documents(spec: str, field: str) -> list[str]:
    name, _, split = spec.partition("@")
    name, _, config = name.partition(":")
    try:
        import datasets
    except ImportError:
        raise MinitronError(
            f"data source '{spec}' is not a file or folder; for a Hugging Face dataset install the "
            "optional extra: pip install 'minitron-lab[data]'"
        ) from None
    try:
        ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, bad split: one message
        raise MinitronError(f"dataset '{spec}' could not be loaded ({type(exc).__name__}: {exc})".split("\n")[0]) from None
    if field not in ds.column_names:
        raise MinitronError(f"dataset '{spec}' has no '{field}' column; columns: {', '.join(ds.column_names)}")
    return [t for t in ds[field] if t]


def load_documents(cfg: DataConfig) -> list[str]:
    """The documents of a source in their fixed order (see module docstring)."""
    src = cfg.source
    if src == DEFAULT_SOURCE:
        docs = pydoc_documents()
    elif Path(src).expanduser().exists():
        path = Path(src).expanduser()
        files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl")) if path.is_dir() else [path]
        if not files:
            raise MinitronError(f"{path}: no .txt or .jsonl files in the folder")
        docs = [d for f in files for d in _file_documents(f, cfg.text_field)]
    else:
        docs = _hf_documents(src.removeprefix("hf:"), cfg.text_field)
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise MinitronError(f"data source '{src}' holds no text")
    return docs


def corpus_text(cfg: DataConfig) -> str:
    text = SEPARATOR.join(load_documents(cfg))
    return text[: cfg.max_chars] if cfg.max_chars else text


def tokenize(text: str, tokenizer) -> torch.Tensor:
    """One flat stream of token ids, no special tokens."""
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def make_splits(stream: torch.Tensor, cfg: DataConfig, source_meta: dict | None = None) -> Splits:
    """Cut a token stream into disjoint calibration and evaluation windows (module docstring)."""
    if cfg.seq_len < 2:
        raise MinitronError(f"--seq-len must be at least 2, got {cfg.seq_len}")
    if cfg.calib_samples < 0 or cfg.eval_samples < 0 or cfg.calib_samples + cfg.eval_samples == 0:
        raise MinitronError("ask for at least one calibration or evaluation sample")
    n_windows = len(stream) // cfg.seq_len
    needed = cfg.calib_samples + cfg.eval_samples
    if n_windows < needed:
        raise MinitronError(
            f"the text gives {n_windows} windows of {cfg.seq_len} tokens ({len(stream)} tokens) but "
            f"{needed} samples were requested ({cfg.calib_samples} calibration + {cfg.eval_samples} "
            "evaluation); pass more text, fewer samples or a shorter --seq-len"
        )
    windows = stream[: n_windows * cfg.seq_len].view(n_windows, cfg.seq_len)
    order = torch.randperm(n_windows, generator=torch.Generator().manual_seed(cfg.seed))
    eval_idx = order[: cfg.eval_samples]
    calib_idx = order[cfg.eval_samples: needed]
    calib, evals = windows[calib_idx].clone(), windows[eval_idx].clone()
    meta = {
        "protocol": "join docs with blank line; tokenize without special tokens; non-overlapping "
        "seq_len windows; seeded permutation; first eval_samples -> eval, next calib_samples -> calib",
        "config": asdict(cfg),
        "stream_tokens": len(stream),
        "windows": n_windows,
        "stream_sha256": hashlib.sha256(stream.numpy().tobytes()).hexdigest()[:16],
        "calib_sha256": hashlib.sha256(calib.numpy().tobytes()).hexdigest()[:16],
        "eval_sha256": hashlib.sha256(evals.numpy().tobytes()).hexdigest()[:16],
        "calib_windows": calib_idx.tolist(),
        "eval_windows": eval_idx.tolist(),
    } | (source_meta or {})
    return Splits(calib=calib, eval=evals, meta=meta)


def shared_tokens(a: list[int], a_len: int, b: list[int], b_len: int) -> bool:
    """Whether windows ``a`` (of a_len tokens) and ``b`` (of b_len) of one stream cover a common token.

    Window i of length T covers stream tokens [i*T, (i+1)*T); used to keep selection and evaluation apart.
    """
    starts = sorted(i * a_len for i in a)  # the a windows are disjoint spans [start, start + a_len)
    for j in b:
        lo, hi = j * b_len, (j + 1) * b_len
        k = bisect.bisect_right(starts, hi - 1) - 1  # the last a window starting before hi
        if k >= 0 and starts[k] + a_len > lo:  # it is the only one that can reach past lo
            return True
    return False


def check_context(seq_len: int, max_positions: int | None) -> None:
    """A window must fit the model's context."""
    if max_positions is not None and seq_len > max_positions:
        raise MinitronError(f"--seq-len {seq_len} is longer than the model's context ({max_positions} positions)")


def read_stream(tokenizer, cfg: DataConfig) -> tuple[torch.Tensor, dict]:
    """The source's token stream and what it was made from (source, characters, text hash)."""
    text = corpus_text(cfg)
    meta = {"source": cfg.source, "chars": len(text), "text_sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
    return tokenize(text, tokenizer), meta


def build_splits(tokenizer, cfg: DataConfig, max_positions: int | None = None) -> Splits:
    """Read, tokenize and split a source for a model; checks the model's context length."""
    check_context(cfg.seq_len, max_positions)
    stream, meta = read_stream(tokenizer, cfg)
    return make_splits(stream, cfg, meta)


def random_splits(vocab: int, cfg: DataConfig, max_positions: int | None = None) -> Splits:
    """Splits of uniform random token ids (seeded) for speed work: no tokenizer, no text, no network.

    The numbers measured on them say nothing about a model; the timings and memory are real.
    """
    check_context(cfg.seq_len, max_positions)
    n = (cfg.calib_samples + cfg.eval_samples) * max(cfg.seq_len, 1)
    stream = torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(cfg.seed))
    return make_splits(stream, cfg, {"source": RANDOM_SOURCE, "chars": 0, "text_sha256": None, "vocab": vocab})
