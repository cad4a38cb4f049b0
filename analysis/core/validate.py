"""The accepted range of every numeric option, in one place, checked at the boundary.

Every number a user can pass has a ``Bound`` here. The CLI checks each option while parsing it
(``cli.py``: ``checked(BOUND)`` as the option's callback), before anything is imported or loaded,
and the library's config dataclasses check the same bounds in ``__post_init__``, so a notebook
gets the message a shell user gets. Nothing is clamped or replaced: a value outside its range is
an error that names the option, the range and the value. Limits that depend on the model (a
window longer than its context, more layers than it has) are checked as soon as its config is
read, before any computation.

A new command adopts a rule with one line per option: ``typer.Option("--steps", callback=checked(STEPS))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.core.errors import MinitronError


@dataclass(frozen=True)
class Bound:
    """A closed (or half-open) interval of integers or finite reals."""

    lo: float | None = None  # smallest accepted value (None: unbounded)
    hi: float | None = None  # largest accepted value (None: unbounded)
    integer: bool = True  # integers only
    lo_open: bool = False  # ``lo`` itself is excluded (a learning rate must be > 0)
    hi_open: bool = False  # ``hi`` itself is excluded (a tolerance must be < 1)

    def describe(self) -> str:
        """The range in words, e.g. 'an integer in [1, 65536]' or 'a number in (0, 1]'."""
        kind = "an integer" if self.integer else "a number"
        if self.lo is not None and self.hi is not None:
            return f"{kind} in {'(' if self.lo_open else '['}{_fmt(self.lo)}, {_fmt(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{kind} {'>' if self.lo_open else '>='} {_fmt(self.lo)}"
        if self.hi is not None:
            return f"{kind} {'<' if self.hi_open else '<='} {_fmt(self.hi)}"
        return kind

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return not (self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)))

    def check(self, option: str, value):
        """``value`` unchanged if it lies in the range (None passes: 'not given'), else a one-line error."""
        if value is None or self.contains(value):
            return value
        raise MinitronError(f"{option} must be {self.describe()}, got {value}")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"


# --- the ranges ------------------------------------------------------------------------------------
# Counts of windows. Zero calibration windows gives all-zero importance and zero held-out windows a
# 0-token perplexity: both are refused where a command would report them.
SAMPLES = Bound(1, 1_000_000)
SAMPLES_OR_NONE = Bound(0, 1_000_000)  # library splits that need only one side (eval-only, calib-only)
SEQ_LEN = Bound(2, 1 << 20)  # tokens per window: one input and one scored target at least; context checked later
BENCH_SEQ_LEN = Bound(1, 1 << 20)  # bench scores nothing: one token is a valid (tiny) forward
BATCH = Bound(1, 1 << 16)  # samples per forward, and the --max-batch-size cap
BLOCK_SIZE = Bound(1, 4096)  # contiguous layers removed at once; at most the model's layers (checked later)
SEED = Bound(0, 2**32 - 1)  # window permutations and training order (torch generators take 64 bits)
STEPS = Bound(1, 10_000_000)  # optimizer steps, timed bench steps
WARMUP = Bound(0, 10_000_000)  # warm-up steps (0: none)
EVERY = Bound(0, 10_000_000)  # evaluate / checkpoint every N steps (0: only at the end)
ACCUM = Bound(1, 65_536)  # micro-batches per optimizer step
LR = Bound(0, 1, integer=False, lo_open=True)  # peak learning rate
MIN_LR = Bound(0, 1, integer=False)  # end of the cosine decay (also <= --lr, checked with it)
LOSS_WEIGHT = Bound(0, 1000, integer=False)  # weight of a loss term (0 switches it off)
TEMPERATURE = Bound(0, 100, integer=False, lo_open=True)
WEIGHT_DECAY = Bound(0, 10, integer=False)
GRAD_NORM = Bound(0, 1e6, integer=False)  # gradient clipping (0 disables it)
WIDTH = Bound(1, 1 << 24)  # kept hidden channels, MLP neurons, heads, layers (<= the teacher's, checked later)
TOLERANCE = Bound(0, 1, integer=False, hi_open=True)  # relative distance to a parameter budget
PARAMS = Bound(1, 1e15, integer=False)  # a parameter budget
MATMUL = Bound(16, 1 << 16)  # n of the n^3 peak matmul
BOOTSTRAP = Bound(0, 1_000_000)  # resamples for a stability estimate (0: off)
INTERVAL_ITERS = Bound(1, 1_000_000)  # bootstrap replicates of an interval (one at least)
TRAIN_STEPS = Bound(0, 10_000_000)  # training steps where 0 means "evaluate only" (search --retrain-steps 0)
STRIDE = Bound(1, 1 << 20)  # tokens between window starts (<= --seq-len, checked with it)
MAX_CHARS = Bound(1, 10**11)  # characters of text read (an empty text scores nothing)
SHOTS = Bound(0, 1000)  # few-shot examples per prompt
LIMIT = Bound(1, 1 << 31)  # documents per task
CKA_TOKENS = Bound(2, 8192)  # tokens in linear CKA: two to centre; (layers+1) n x n float64 Gram matrices per model
WORST = Bound(0, 100_000)  # tokens listed by loss increase (0: none)
SEEDS = Bound(1, 1000)  # seeds an experiment runs over


def check_fields(obj, rules: dict[str, tuple[str, Bound]]) -> None:
    """Check dataclass fields: ``rules`` maps a field to (the option users type, its bound)."""
    for name, (option, bound) in rules.items():
        bound.check(option, getattr(obj, name))


def check_choice(option: str, value: str, choices) -> str:
    """``value`` if it is one of ``choices``, else a one-line error listing them."""
    if value not in choices:
        raise MinitronError(f"unknown {option} '{value}'; choose from {', '.join(choices)}")
    return value


def parse_int_list(option: str, text: str, bound: Bound) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4), each value in ``bound``; anything else is an error naming the option."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise MinitronError(f"{option} takes comma-separated integers (e.g. 1,2,4), got '{text}'") from None
    if not values:
        raise MinitronError(f"{option} needs at least one value")
    for v in values:
        bound.check(option, v)
    return values
