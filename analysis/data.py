"""Text sources and the deterministic sampling protocol.

Protocol (recorded in every result):
  1. Documents are read in a fixed order (default corpus: ``pydoc_data.topics`` in sorted key
     order; files: sorted paths, ``.txt`` whole, ``.jsonl`` one record per line, field ``text``).
  2. They are joined with a blank line and tokenized once, without special tokens.
  3. The token stream is cut into non-overlapping windows of ``seq_len`` tokens (tail dropped).
  4. Windows are permuted with ``torch.Generator().manual_seed(seed)`` and cut into three
     disjoint splits, each with one job:

       permutation:  [ eval_samples | calib_samples | ... unused ... | test_samples ]
                       selection      calibration                     evaluation (read from the end)

     * calibration (``calib``): importance statistics (``analyze``'s hooks); training windows
       start here and run on into the unused middle when a run needs more;
     * selection (``eval``): ``analyze``'s held-out windows (its perplexity and drop-block losses);
       whatever ranks layers or candidates from those numbers (depth by drop loss, search ranking)
       has selected on them, so they may not score the result;
     * evaluation (``test``): the reported losses of ``prune``, ``distill`` and every experiment,
       taken from the END of the permutation (last window first), so they do not move when the
       other sizes change and never meet the other two.

     ``exclude`` (token spans) keeps the evaluation split off windows another step already used
     (an analysis run cut at another length): such windows are skipped, still from the end.
     Every result records the splits (``split_record``: window indices and hashes) and
     ``check_disjoint`` proves them disjoint in tokens.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from analysis.core import validate as V
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
    eval_samples: int = 4  # selection split: analyze's held-out samples (perplexity, layer sensitivity)
    test_samples: int = 0  # evaluation split: the reported losses, from the end of the permutation
    seed: int = 0  # permutation of windows
    text_field: str = "text"  # field read from .jsonl records and datasets
    max_chars: int | None = None  # read at most this many characters (None: everything)
    download: bool = False  # a Hugging Face dataset may be fetched (else: the local cache only, offline)

    def __post_init__(self):
        V.check_fields(self, {"seq_len": ("--seq-len", V.SEQ_LEN), "calib_samples": ("--samples", V.SAMPLES_OR_NONE),
                              "eval_samples": ("--eval-samples", V.SAMPLES_OR_NONE),
                              "test_samples": ("--eval-samples", V.SAMPLES_OR_NONE), "seed": ("--seed", V.SEED)})


ROLES = {"calib": "calibration", "eval": "selection", "test": "evaluation"}  # split -> its one job


@dataclass
class Splits:
    calib: torch.Tensor  # (calib_samples, seq_len) token ids: importance statistics
    eval: torch.Tensor  # (eval_samples, seq_len) token ids: selection (analyze's held-out windows)
    meta: dict  # protocol, source, hashes and window indices of every split
    test: torch.Tensor | None = None  # (test_samples, seq_len) token ids: evaluation (reported losses)


def pydoc_documents() -> list[str]:
    """Python's own documentation topics: always installed, a few hundred thousand characters."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def read_text_file(path: Path) -> str:
    """A text file's contents, strictly UTF-8: a binary or differently encoded file is named, never
    decoded into replacement characters (which would then be measured as if they were text)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MinitronError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if b"\x00" in raw[:1 << 16]:
        raise MinitronError(f"{path}: a binary file (NUL bytes), not UTF-8 text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise MinitronError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                            "convert it first, e.g. iconv -t utf-8") from None


def _file_documents(path: Path, field: str) -> list[str]:
    text = read_text_file(path)
    if path.suffix != ".jsonl":
        return [text]
    docs = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                value = json.loads(line)[field]
            except (json.JSONDecodeError, KeyError, TypeError, IndexError):
                raise MinitronError(f"{path}:{n}: not a JSON object with a '{field}' field") from None
            if not isinstance(value, str):
                raise MinitronError(f"{path}:{n}: the '{field}' field is {type(value).__name__}, not text")
            docs.append(value)
    return docs


def _hf_documents(spec: str, field: str, download: bool = False) -> list[str]:
    name, _, split = spec.partition("@")
    name, _, config = name.partition(":")
    try:
        import datasets
    except ImportError:
        raise MinitronError(
            f"data source '{spec}' is not a file or folder; for a Hugging Face dataset install the "
            "optional extra: pip install 'minitron-lab[data]'"
        ) from None
    from analysis.core.hub import offline

    try:
        with offline(not download):
            ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, bad split: one message
        hint = "" if download else "; offline: only the local Hugging Face cache is read (--download fetches it)"
        raise MinitronError(f"dataset '{spec}' could not be loaded ({type(exc).__name__}: {exc})".split("\n")[0]
                            + hint) from None
    if field not in ds.column_names:
        raise MinitronError(f"dataset '{spec}' has no '{field}' column; columns: {', '.join(ds.column_names)}")
    return [t for t in ds[field] if t]


def load_documents(cfg: DataConfig) -> list[str]:
    """The documents of a source in their fixed order (see module docstring)."""
    src = cfg.source
    if src == DEFAULT_SOURCE:
        docs = pydoc_documents()
    elif not Path(src).expanduser().exists() and _looks_like_path(src):
        raise MinitronError(f"--data {src}: no such file or directory (a source is pydoc, random, a .txt/.jsonl "
                            "file or folder, or a Hugging Face dataset name[:config][@split])")
    elif Path(src).expanduser().exists():
        path = Path(src).expanduser()
        files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl")) if path.is_dir() else [path]
        if not files:
            raise MinitronError(f"{path}: no .txt or .jsonl files in the folder")
        docs = [d for f in files for d in _file_documents(f, cfg.text_field)]
    else:
        docs = _hf_documents(src.removeprefix("hf:"), cfg.text_field, cfg.download)
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise MinitronError(f"data source '{src}' holds no text")
    return docs


def _looks_like_path(src: str) -> bool:
    """A source that can only be meant as a local path: ./, /, ~, or a .txt/.jsonl name."""
    return src.startswith((".", "/", "~")) or Path(src).suffix in (".txt", ".jsonl", ".json", ".csv", ".md")


def corpus_text(cfg: DataConfig) -> str:
    text = SEPARATOR.join(load_documents(cfg))
    return text[: cfg.max_chars] if cfg.max_chars else text


def tokenize(text: str, tokenizer) -> torch.Tensor:
    """One flat stream of token ids, no special tokens."""
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


def stream_sha256(t: torch.Tensor) -> str:
    """The short hash results use to name a token stream (or any split's token ids)."""
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]


def _overlaps(w: int, seq_len: int, spans) -> bool:
    """Whether window ``w`` (tokens [w·T, (w+1)·T)) meets any (start, end) token span."""
    a, b = w * seq_len, (w + 1) * seq_len
    return any(a < end and start < b for start, end in spans)


def _test_windows(order: torch.Tensor, free_from: int, cfg: DataConfig, exclude) -> torch.Tensor:
    """The evaluation windows: the permutation read from its end, skipping windows that meet ``exclude``."""
    picked = []
    for w in order.flip(0)[: len(order) - free_from].tolist():
        if len(picked) == cfg.test_samples:
            break
        if not _overlaps(w, cfg.seq_len, exclude):
            picked.append(w)
    if len(picked) < cfg.test_samples:
        raise MinitronError(
            f"only {len(picked)} of the {cfg.test_samples} evaluation windows are free of the calibration and "
            "selection windows; pass more text, fewer samples or a shorter --seq-len")
    return torch.tensor(picked, dtype=torch.long)


def make_splits(stream: torch.Tensor, cfg: DataConfig, source_meta: dict | None = None,
                exclude: tuple[tuple[int, int], ...] = ()) -> Splits:
    """Cut a token stream into disjoint calibration, selection and evaluation windows (module docstring).

    ``exclude``: (start, end) token spans of this stream the evaluation split must not touch.
    """
    sizes = (cfg.calib_samples, cfg.eval_samples, cfg.test_samples)  # each checked >= 0 by DataConfig
    if sum(sizes) == 0:
        raise MinitronError("--samples, --eval-samples and the evaluation windows are all 0: ask for at least one window")
    n_windows = len(stream) // cfg.seq_len
    needed = sum(sizes)
    if n_windows < needed:
        raise MinitronError(
            f"the text gives {n_windows} windows of {cfg.seq_len} tokens ({len(stream)} tokens) but "
            f"{needed} samples were requested ({cfg.calib_samples} calibration + {cfg.eval_samples} "
            f"selection + {cfg.test_samples} evaluation); pass more text, fewer samples or a shorter --seq-len"
        )
    windows = stream[: n_windows * cfg.seq_len].view(n_windows, cfg.seq_len)
    order = torch.randperm(n_windows, generator=torch.Generator().manual_seed(cfg.seed))
    eval_idx = order[: cfg.eval_samples]
    calib_idx = order[cfg.eval_samples: cfg.eval_samples + cfg.calib_samples]
    test_idx = _test_windows(order, cfg.eval_samples + cfg.calib_samples, cfg, exclude)
    calib, evals, test = windows[calib_idx].clone(), windows[eval_idx].clone(), windows[test_idx].clone()
    meta = {
        "protocol": "join docs with blank line; tokenize without special tokens; non-overlapping "
        "seq_len windows; seeded permutation; first eval_samples -> selection (eval), next calib_samples -> "
        "calibration (calib), last test_samples (read from the end) -> evaluation (test)",
        "config": asdict(cfg),
        "stream_tokens": len(stream),
        "windows": n_windows,
        "stream_sha256": stream_sha256(stream),
        "calib_sha256": stream_sha256(calib),
        "eval_sha256": stream_sha256(evals),
        "test_sha256": stream_sha256(test),
        "calib_windows": calib_idx.tolist(),
        "eval_windows": eval_idx.tolist(),
        "test_windows": test_idx.tolist(),
        "roles": dict(ROLES),
        "excluded_spans": len(exclude),
    } | (source_meta or {})
    return Splits(calib=calib, eval=evals, meta=meta, test=test)


def window_spans(meta: dict, split: str) -> list[tuple[int, int]]:
    """Token spans [start, end) of one split (``calib``, ``eval``, ``test``) of a splits ``meta``."""
    T = meta["config"]["seq_len"]
    return [(w * T, (w + 1) * T) for w in meta.get(f"{split}_windows", [])]


def split_record(meta: dict, roles: dict[str, str] | tuple[str, ...] = ("calib", "eval", "test")) -> dict:
    """The splits of a result, compact: the stream they cut, and per role its window indices and hash.

    ``roles``: which splits, named by their job (``ROLES``), or a split -> name mapping when a
    pipeline gives a split another job (``distill`` trains on the calibration split).
    """
    cfg = meta["config"]
    names = roles if isinstance(roles, dict) else {split: ROLES[split] for split in roles}
    out = {"source": meta.get("source"), "stream_sha256": meta["stream_sha256"], "seq_len": cfg["seq_len"],
           "seed": cfg["seed"]}
    for split, name in names.items():
        windows = meta.get(f"{split}_windows", [])
        out[name] = {"n": len(windows), "windows": windows, "sha256": meta.get(f"{split}_sha256")}
    return out


def record_spans(record: dict, role: str) -> list[tuple[int, int]]:
    """Token spans of one role (``calibration``, ``selection``, ``evaluation``, ...) of a ``split_record``."""
    T = record["seq_len"]
    return [(w * T, (w + 1) * T) for w in (record.get(role) or {}).get("windows", [])]


def check_disjoint(parts: dict[str, list[tuple[int, int]]]) -> None:
    """Raise unless spans under different names never share a token (one token stream assumed).

    One sweep in start order: a span that begins before the furthest end seen so far overlaps the
    span holding that end; spans under one name (a split's windows) never overlap each other.
    """
    spans = sorted((start, end, name) for name, items in parts.items() for start, end in items)
    reach, holder = -1, None
    for start, end, name in spans:
        if holder is not None and start < reach[1] and name != holder:
            raise MinitronError(f"the {holder} and {name} windows overlap (tokens {reach[0]}..{reach[1]} and "
                                f"{start}..{end}): a number measured on them would not be held out")
        if holder is None or end > reach[1]:
            reach, holder = (start, end), name


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


def build_splits(tokenizer, cfg: DataConfig, max_positions: int | None = None,
                 exclude: tuple[tuple[int, int], ...] = ()) -> Splits:
    """Read, tokenize and split a source for a model; checks the model's context length."""
    check_context(cfg.seq_len, max_positions)
    stream, meta = read_stream(tokenizer, cfg)
    return make_splits(stream, cfg, meta, exclude)


def random_splits(vocab: int, cfg: DataConfig, max_positions: int | None = None) -> Splits:
    """Splits of uniform random token ids (seeded) for speed work: no tokenizer, no text, no network.

    The numbers measured on them say nothing about a model; the timings and memory are real.
    """
    check_context(cfg.seq_len, max_positions)
    n = (cfg.calib_samples + cfg.eval_samples + cfg.test_samples) * max(cfg.seq_len, 1)
    stream = torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(cfg.seed))
    return make_splits(stream, cfg, {"source": RANDOM_SOURCE, "chars": 0, "text_sha256": None, "vocab": vocab})
