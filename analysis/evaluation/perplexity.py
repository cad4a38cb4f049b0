"""Perplexity of a whole text under a named protocol, so a number can be compared with the tool that made it.

Protocols (``PROTOCOLS``; N tokens, window L, every log-softmax in float32):

``hf-stride``  Hugging Face's fixed-length recipe: windows start every ``stride`` tokens (default L) and
               hold up to L tokens; a window scores its last min(stride, length) targets from their
               in-window prefix, never the text's first token; with stride = L the windows are
               independent and N - ceil(N/L) tokens are scored. No BOS; the text is tokenized without
               special tokens (as ``analysis.data`` does).
``lm-eval``    lm-evaluation-harness's ``loglikelihood_rolling`` (0.4.x): the text is encoded as the
               harness encodes it (the tokenizer's default special tokens); the first window feeds
               [prefix] + t[0:L-1] and scores t[0:L], prefix = the tokenizer's BOS (else EOS); window
               k feeds t[kL-1 : kL+L-1] and scores t[kL : kL+L]; the last, partial one feeds the final
               L tokens and scores only the new ones. Every token is scored once (N scored). Word
               perplexity exp(NLL / words), byte perplexity exp(NLL / bytes) and bits per byte
               NLL / bytes / ln 2 as the harness's wikitext task defines them (words: re.split(r"\\s+"),
               bytes: UTF-8).

Both sum float32 log-probabilities into a float64 total through ``analysis.evaluation.loss``. Word and
byte figures are reported only for ``lm-eval``, where every token is scored: for ``hf-stride`` they
would divide the NLL of fewer tokens by all the words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from analysis.core import validate as V
from analysis.core.errors import MinitronError
from analysis.evaluation.loss import IGNORE, targets_nll
from analysis.models.adapter import DecoderAdapter


@dataclass(frozen=True)
class Window:
    """One forward pass: input ids (T,) and the target each position predicts (T,), IGNORE where unscored."""

    inputs: torch.Tensor
    targets: torch.Tensor


def _window(inputs: torch.Tensor, targets: torch.Tensor) -> Window:
    return Window(inputs.clone(), targets.clone())


def hf_stride_windows(tokens: torch.Tensor, seq_len: int, stride: int | None = None) -> list[Window]:
    """Hugging Face's fixed-length recipe over ``tokens`` (N,) (module docstring)."""
    stride = stride or seq_len
    if not 0 < stride <= seq_len:
        raise MinitronError(f"--stride must be in [1, --seq-len {seq_len}], got {stride}")
    n, out, scored_to = len(tokens), [], 0
    for begin in range(0, n, stride):
        end = min(begin + seq_len, n)
        new = end - scored_to  # tokens not scored by an earlier window
        chunk = tokens[begin:end]
        targets = torch.full_like(chunk, IGNORE)
        targets[:-1] = chunk[1:]  # position t predicts token t+1
        targets[: max(0, len(chunk) - new - 1)] = IGNORE  # context: scored by an earlier window
        if (targets != IGNORE).any():
            out.append(_window(chunk, targets))
        scored_to = end
        if end == n:
            break
    return out


def lm_eval_windows(tokens: torch.Tensor, seq_len: int, prefix: int) -> list[Window]:
    """lm-evaluation-harness's disjoint rolling windows over ``tokens`` (N,) (module docstring)."""
    n = len(tokens)
    if n == 0:
        return []
    first = min(seq_len, n)
    out = [_window(torch.cat([tokens.new_tensor([prefix]), tokens[: first - 1]]), tokens[:first])]
    done = first
    while done < n:
        new = min(n - done, seq_len)
        end = done + new
        inputs = tokens[max(0, end - seq_len - 1): end - 1]  # the L tokens before each scored one
        targets = torch.full_like(inputs, IGNORE)
        targets[-new:] = tokens[end - new: end]
        out.append(_window(inputs, targets))
        done = end
    return out


def lm_eval_encode(tokenizer, text: str) -> list[int]:
    """The text's tokens as the harness's HFLM.tok_encode makes them (0.4.x, add_bos_token unset)."""
    prefix = prefix_token(tokenizer)
    special = not text.startswith(tokenizer.decode([prefix]))  # the harness skips specials after a BOS prefix
    return tokenizer(text, add_special_tokens=special, return_attention_mask=False)["input_ids"]


def plain_encode(tokenizer, text: str) -> list[int]:
    """Tokens without special tokens (the ``analysis.data`` stream)."""
    return tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]


def prefix_token(tokenizer) -> int:
    """The token lm-eval conditions the first window on: BOS, else EOS."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise MinitronError("the tokenizer has neither a BOS nor an EOS token: the lm-eval protocol needs one")
    return token


@dataclass(frozen=True)
class Protocol:
    """How a text becomes scored windows."""

    encode: Callable  # (tokenizer, text) -> token ids
    windows: Callable  # (tokens, seq_len, stride, tokenizer) -> list[Window]
    every_token: bool  # every token scored once: word and byte figures are meaningful
    description: str


PROTOCOLS: dict[str, Protocol] = {
    "hf-stride": Protocol(plain_encode, lambda t, L, stride, tok: hf_stride_windows(t, L, stride), False,
                          "Hugging Face fixed-length recipe: windows of seq_len every stride tokens, each scoring the "
                          "targets earlier windows did not, from their in-window prefix; the first token unscored; "
                          "no BOS; no special tokens; float32 log-softmax"),
    "lm-eval": Protocol(lm_eval_encode, lambda t, L, stride, tok: lm_eval_windows(t, L, prefix_token(tok)), True,
                        "lm-evaluation-harness loglikelihood_rolling: BOS-or-EOS prefix on the first window, disjoint "
                        "windows of seq_len each conditioned on the seq_len tokens before its targets, every token "
                        "scored once; float32 log-softmax; word/byte figures as the harness's wikitext task"),
}


@dataclass
class PerplexityResult:
    """NLL of one text under one protocol, and the perplexities it gives."""

    protocol: str
    seq_len: int
    stride: int | None  # hf-stride only
    tokens: int  # N, tokens of the text
    scored: int  # tokens whose log-probability is in ``nll``
    windows: int  # forward passes
    nll: float  # summed negative log-likelihood, nats
    words: int  # re.split(r"\s+", text)
    bytes: int  # UTF-8 bytes
    prefix_token: int | None = None  # lm-eval only

    @property
    def token_perplexity(self) -> float:
        if self.scored <= 0:
            raise MinitronError("no token was scored: the text is too short for this protocol")
        return math.exp(self.nll / self.scored)

    def to_json(self) -> dict:
        """Every count and the perplexities the protocol defines (word/byte figures only when every token is scored)."""
        doc = asdict(self) | {"token_perplexity": self.token_perplexity, "loss": self.nll / self.scored,
                              "description": PROTOCOLS[self.protocol].description}
        if PROTOCOLS[self.protocol].every_token:
            doc |= {"word_perplexity": math.exp(self.nll / self.words), "byte_perplexity": math.exp(self.nll / self.bytes),
                    "bits_per_byte": self.nll / self.bytes / math.log(2)}
        return doc


@torch.no_grad()
def score_windows(model, windows: list[Window], batch_size: int = 8, progress: bool = False) -> tuple[float, int]:
    """(NLL sum, scored tokens) of ``windows``; windows of equal length are batched together."""
    from tqdm.auto import tqdm

    ad, device = DecoderAdapter(model), next(model.parameters()).device
    by_len: dict[int, list[Window]] = {}
    for w in windows:
        by_len.setdefault(len(w.inputs), []).append(w)
    nll, scored = 0.0, 0
    bar = tqdm(total=len(windows), desc="perplexity", unit="window", disable=not progress)
    for group in by_len.values():
        for s in range(0, len(group), batch_size):
            batch = group[s:s + batch_size]
            inputs = torch.stack([w.inputs for w in batch]).to(device)
            targets = torch.stack([w.targets for w in batch])
            normed = ad.backbone(input_ids=inputs, use_cache=False).last_hidden_state
            nll += float(targets_nll(ad, normed, targets.to(device)))
            scored += int((targets != IGNORE).sum())
            bar.update(len(batch))
    bar.close()
    return nll, scored


def count_words(text: str) -> int:
    """Words as lm-eval's wikitext task counts them."""
    return len(re.split(r"\s+", text))


def perplexity(model, tokenizer, text: str, protocol: str, seq_len: int, stride: int | None = None,
               batch_size: int = 8, progress: bool = False) -> PerplexityResult:
    """Score ``text`` as one document under ``protocol`` (``PROTOCOLS``)."""
    if protocol not in PROTOCOLS:
        raise MinitronError(f"unknown --protocol '{protocol}'; choose from {', '.join(PROTOCOLS)}")
    if seq_len < 2:
        raise MinitronError(f"--seq-len must be at least 2, got {seq_len}")
    p = PROTOCOLS[protocol]
    tokens = torch.tensor(p.encode(tokenizer, text), dtype=torch.long)
    windows = p.windows(tokens, seq_len, stride, tokenizer)
    nll, scored = score_windows(model, windows, batch_size, progress)
    return PerplexityResult(protocol=protocol, seq_len=seq_len, stride=(stride or seq_len) if protocol == "hf-stride" else None,
                            tokens=len(tokens), scored=scored, windows=len(windows), nll=nll, words=count_words(text),
                            bytes=len(text.encode("utf-8")),
                            prefix_token=prefix_token(tokenizer) if protocol == "lm-eval" else None)


def heldout_lm_eval(model, tokenizer, ids: torch.Tensor, batch_size: int = 8) -> PerplexityResult:
    """The lm-eval protocol on held-out windows (M, T), each window its own document (``analyze``).

    A window of T tokens is one rolling window: [prefix] + w[0:T-1] scores all T tokens. Words and bytes
    count the windows' decoded text.
    """
    prefix = prefix_token(tokenizer)
    windows = [w for row in ids for w in lm_eval_windows(row, ids.shape[1], prefix)]
    nll, scored = score_windows(model, windows, batch_size)
    texts = [tokenizer.decode(row.tolist()) for row in ids]
    return PerplexityResult(protocol="lm-eval", seq_len=ids.shape[1], stride=None, tokens=ids.numel(), scored=scored,
                            windows=len(windows), nll=nll, words=sum(count_words(t) for t in texts),
                            bytes=sum(len(t.encode("utf-8")) for t in texts), prefix_token=prefix)


@dataclass
class PerplexityJob:
    """One ``perplexity`` command: which model, which text, which protocols."""

    load: object  # analysis.models.loading.LoadConfig
    data: object  # analysis.data.DataConfig: the source (one document) and max_chars
    protocols: tuple[str, ...] = tuple(PROTOCOLS)
    seq_len: int = 512
    stride: int | None = None  # hf-stride only (None: seq_len)
    batch_size: int = 4

    def __post_init__(self):
        """Protocols and sizes, checked before any text is read or model loaded."""
        for name in self.protocols:
            V.check_choice("--protocol", name, PROTOCOLS)
        V.check_fields(self, {"seq_len": ("--seq-len", V.SEQ_LEN), "stride": ("--stride", V.STRIDE),
                              "batch_size": ("--batch-size", V.BATCH)})
        if self.stride is not None and "hf-stride" in self.protocols and self.stride > self.seq_len:
            raise MinitronError(f"--stride must be in [1, --seq-len {self.seq_len}], got {self.stride}")


def run_perplexity(job: PerplexityJob, progress: bool = False) -> dict:
    """Load the model, read the text, score it under every protocol: the perplexity.json document."""
    import hashlib

    from analysis.core.provenance import now, versions
    from analysis.data import check_context, corpus_text
    from analysis.models.loading import load_model

    text = corpus_text(job.data)  # a bad source fails before the model loads
    loaded = load_model(job.load)
    if loaded.tokenizer is None:
        raise MinitronError(f"{job.load.model}: no tokenizer, cannot tokenize the text")
    check_context(job.seq_len, getattr(loaded.model.config, "max_position_embeddings", None))
    results = {name: perplexity(loaded.model, loaded.tokenizer, text, name, job.seq_len, job.stride, job.batch_size,
                                progress).to_json() for name in job.protocols}
    data = {"source": job.data.source, "chars": len(text), "max_chars": job.data.max_chars,
            "text_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
            "documents": "the whole source as one document (documents joined by a blank line, as analysis.data does)"}
    return {"command": "perplexity", "created": now(), "model": loaded.provenance, "data": data, "results": results,
            "versions": versions()}
