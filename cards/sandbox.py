"""The jinja2 sandbox every card renders in, with limits on time, output size and work.

jinja2's ``SandboxedEnvironment`` stops a template from reaching Python internals, but not from
spending the machine: ``range(100000)`` nested twice is 10^10 iterations, ``'x' * 10**10`` or
``'x'|center(10**10)`` asks for 10 GB, ``10**10**10`` never finishes. A card template here
renders under these limits, each a one-line ``TemplateLimitError``:

  * time: ``RENDER_SECONDS`` of wall clock (SIGALRM in the main thread, where the CLI renders);
  * output: ``MAX_OUTPUT`` characters, counted while the template streams (``Template.generate``);
  * loops: every ``range()`` of one render draws from one budget of ``MAX_ITERATIONS`` items, so
    nested loops fail within milliseconds instead of running for hours (this holds in any thread);
  * sizes: ``*`` and ``%`` on strings and lists, ``**`` on numbers, and numeric arguments of filters
    and calls (widths, counts) are checked before Python allocates the result.
"""

from __future__ import annotations

import math
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

RENDER_SECONDS = 2.0
MAX_OUTPUT = 4_000_000  # characters of rendered card
MAX_ITERATIONS = 1_000_000  # range() items over one render
MAX_ARG = 100_000  # largest width, count or repeat a filter, call or operator may take
MAX_POWER_BITS = 4096  # largest integer ** may produce
_WIDE_FORMAT = re.compile(r"\d{6,}")  # a field width or precision of a million or more


class TemplateLimitError(SecurityError):
    """A template exceeded a limit of the sandbox (time, output, loop iterations, sizes)."""


class _Budget:
    def __init__(self, items: int):
        self.left = items

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise TemplateLimitError(f"the template iterated more than {MAX_ITERATIONS:,} times over range()")


class _Range:
    """``range`` whose iteration draws from the render's budget (len, membership and indexing are free)."""

    def __init__(self, r: range, budget: _Budget):
        self.r, self.budget = r, budget

    def __iter__(self) -> Iterator[int]:
        for i in self.r:
            self.budget.take()
            yield i

    def __len__(self) -> int:
        return len(self.r)

    def __contains__(self, x) -> bool:
        return x in self.r

    def __getitem__(self, i):
        return self.r[i]

    def __repr__(self) -> str:
        return repr(self.r)


def _check_arg(value, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARG:
        raise TemplateLimitError(f"{what} got {value}, above the sandbox's limit of {MAX_ARG:,}")


WIDTH_FILTERS = ("center", "indent", "wordwrap", "batch", "slice")  # filters whose arguments size the result
WIDTH_METHODS = ("center", "ljust", "rjust", "zfill", "expandtabs", "__mul__", "__rmul__")


def _guard_filter(name: str, fn):
    """``fn`` with its sizing arguments checked (the filtered value itself may be any size)."""
    from jinja2.utils import _PassArg

    skip = 2 if _PassArg.from_obj(fn) else 1  # context/environment first, then the value

    def guarded(*args, **kwargs):
        for v in list(args[skip:]) + list(kwargs.values()):
            _check_arg(v, f"filter '{name}'")
        if name == "format" and len(args) >= skip and isinstance(args[skip - 1], str) \
                and _WIDE_FORMAT.search(args[skip - 1]):
            raise TemplateLimitError("a format with a width or precision above the sandbox's limit")
        return fn(*args, **kwargs)
    if hasattr(fn, "jinja_pass_arg"):  # keep jinja's context/environment passing marker
        guarded.jinja_pass_arg = fn.jinja_pass_arg
    return guarded


class Sandbox(SandboxedEnvironment):
    """jinja2's sandbox with the limits of the module docstring; an unsafe attribute fails at once
    instead of rendering as an empty string."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget = _Budget(MAX_ITERATIONS)
        self.globals["range"] = self._range
        for name in (*WIDTH_FILTERS, "format"):
            self.filters[name] = _guard_filter(name, self.filters[name])

    def _range(self, *args) -> _Range:
        for a in args:
            if not isinstance(a, int) or isinstance(a, bool):
                raise TemplateLimitError("range() takes integers")
        r = range(*args)
        if len(r) > MAX_ARG:
            raise TemplateLimitError(f"range() of {len(r):,} items, above the sandbox's limit of {MAX_ARG:,}")
        return _Range(r, self.budget)

    def unsafe_undefined(self, obj, attribute):
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def call_binop(self, context, operator, left, right):
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * abs(n) > MAX_OUTPUT:
                    raise TemplateLimitError(f"'*' would build {len(seq) * abs(n):,} items, above {MAX_OUTPUT:,}")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right * math.log2(abs(left)) > MAX_POWER_BITS:
                raise TemplateLimitError(f"'**' would give a number of more than {MAX_POWER_BITS} bits")
        elif operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise TemplateLimitError("a '%' format with a width or precision above the sandbox's limit")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value):
        """``str.format`` / ``format_map`` of a template string: refuse huge field widths up front."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _WIDE_FORMAT.search(str(getattr(value, "__self__", ""))):
            raise TemplateLimitError("a format with a width or precision above the sandbox's limit")
        return wrapped

    def call(self, context, obj, /, *args, **kwargs):
        name, owner = getattr(obj, "__name__", ""), getattr(obj, "__self__", None)
        if isinstance(owner, (str, bytes, list, tuple)):
            if name in WIDTH_METHODS:
                for v in list(args) + list(kwargs.values()):
                    _check_arg(v, f"{name}()")
            if name in ("format", "format_map") and isinstance(owner, str) and _WIDE_FORMAT.search(owner):
                raise TemplateLimitError("a format with a width or precision above the sandbox's limit")
        return super().call(context, obj, *args, **kwargs)


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise TemplateLimitError after ``seconds`` of wall clock (main thread only: signals need it)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame):
        raise TemplateLimitError(f"rendering took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    old_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_timer[0]:  # someone else's alarm was running: give it back what is left
            signal.setitimer(signal.ITIMER_REAL, *old_timer)


def render_limited(template: jinja2.Template, context: dict) -> str:
    """Render ``template`` under the time, output and work limits (module docstring)."""
    parts, size = [], 0
    with _time_limit(RENDER_SECONDS):
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateLimitError(f"the card grew past {MAX_OUTPUT:,} characters")
            parts.append(chunk)
    return "".join(parts)
