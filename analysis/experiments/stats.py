"""Intervals over seeds and the words a result may use: pure functions on lists of floats.

Every experiment runs once per seed; a seed draws its own calibration, selection and evaluation
windows (and training order). A quantity measured once per seed, x_1..x_n, is reported as

    mean ± t_{0.975, n-1} · s / sqrt(n),    s = sample standard deviation (n - 1 in the denominator),

a 95% Student-t interval over seeds. A comparison of two variants uses the same interval on the
per-seed paired differences d_i = a_i - b_i (the same windows score both), so window-to-window
noise common to both cancels. A direction ("lower", "agrees") is stated only when the interval
excludes zero; otherwise the words are "no measurable difference". Rank correlations get the same interval, its ends
clipped to [-1, 1] (``correlation_interval``).

A held-out loss at or above ln |V| is no better than a uniform guess over the vocabulary: such a
model has collapsed, and its rank among other collapsed models says nothing; ``collapsed`` marks it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

# Two-sided 95% quantiles of Student's t, t_{0.975, df}, df = 1..30 (beyond: 1.96 + 2.4/df, within 0.002).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
INTERVAL = "95% Student-t interval over seeds (mean ± t_{0.975, n-1} · sd / √n; paired differences for comparisons)"
NO_DIFFERENCE = "no measurable difference"


def t975(df: int) -> float:
    """t_{0.975, df}: the half-width multiplier of a 95% interval from df + 1 values."""
    if df < 1:
        raise ValueError("an interval needs at least two values")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df


@dataclass(frozen=True)
class Interval:
    """Mean of per-seed values and its 95% t-interval (lo = hi = None with one value)."""

    mean: float
    lo: float | None
    hi: float | None
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.lo is not None and (self.lo > 0 or self.hi < 0)

    def to_json(self) -> dict:
        return asdict(self)


def interval(values: list[float]) -> Interval:
    """Mean and 95% t-interval over seeds (module docstring); NaN or empty input is refused."""
    xs = [float(v) for v in values]
    if not xs or any(math.isnan(x) for x in xs):
        raise ValueError(f"an interval needs finite values, got {values}")
    n, mean = len(xs), sum(xs) / len(xs)
    if n == 1:
        return Interval(mean, None, None, 1)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def correlation_interval(values: list[float]) -> Interval:
    """The t-interval of per-seed correlations, its ends clipped to [-1, 1] (a correlation cannot leave it).

    Clipping changes only what is printed, never whether zero is excluded. (Fisher's z scale was
    tried and dropped: one seed with r = 1 sends z to infinity and swamps the others.)
    """
    iv = interval(values)
    clip = (lambda v: None if v is None else max(-1.0, min(1.0, v)))
    return Interval(iv.mean, clip(iv.lo), clip(iv.hi), iv.n)


def paired(a: list[float], b: list[float]) -> Interval:
    """Interval of the per-seed differences a_i - b_i (same seeds, same windows)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same seeds ({len(a)} vs {len(b)})")
    return interval([x - y for x, y in zip(a, b)])


def lower_or_not(diff: Interval, a: str, b: str) -> str:
    """Words for a loss difference a - b: which is lower, only when the interval excludes zero."""
    if not diff.excludes_zero:
        return f"{NO_DIFFERENCE} between {a} and {b}"
    return f"{a} is lower than {b}" if diff.hi < 0 else f"{b} is lower than {a}"


def agreement(rho: Interval) -> str:
    """Words for a rank correlation between our order and the paper's."""
    if not rho.excludes_zero:
        return f"{NO_DIFFERENCE} from no correlation: no measurable agreement with the paper's order"
    return "our order agrees with the paper's" if rho.lo > 0 else "our order runs against the paper's"


def collapse_threshold(vocab: int) -> float:
    """ln |V|: the loss of a uniform guess over the vocabulary (nats/token)."""
    return math.log(vocab)


def collapsed(losses: list[float], vocab: int) -> bool:
    """Whether a variant collapsed on any seed: loss at or above ln |V| (module docstring)."""
    return any(x >= collapse_threshold(vocab) for x in losses)


def fmt(iv: Interval, digits: int = 2, sign: bool = False) -> str:
    """'7.51 [7.40, 7.62]' (or '7.51' for one seed)."""
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    if iv.lo is None:
        return f.format(iv.mean)
    return f"{f.format(iv.mean)} [{f.format(iv.lo)}, {f.format(iv.hi)}]"
