"""Option ranges: the Bound arithmetic, and the rule that every numeric CLI option has one."""

from __future__ import annotations

import math

import pytest

from analysis.core import validate as V
from analysis.core.errors import MinitronError


def test_bounds_accept_their_range_and_nothing_else():
    b = V.Bound(1, 10)
    assert [b.contains(x) for x in (0, 1, 10, 11, 2.5, True, "3")] == [False, True, True, False, False, False, False]
    lr = V.Bound(0, 1, integer=False, lo_open=True)
    assert [lr.contains(x) for x in (0.0, 1e-9, 1.0, 1.5, math.nan, math.inf, -math.inf)] == [
        False, True, True, False, False, False, False]
    tol = V.Bound(0, 1, integer=False, hi_open=True)
    assert tol.contains(0.0) and not tol.contains(1.0)
    assert V.Bound(lo=0).contains(10**30) and not V.Bound(lo=0).contains(-1)


def test_messages_name_the_option_the_range_and_the_value():
    with pytest.raises(MinitronError, match=r"^--samples must be an integer in \[1, 1000000\], got 0$"):
        V.SAMPLES.check("--samples", 0)
    with pytest.raises(MinitronError, match=r"^--lr must be a number in \(0, 1\], got nan$"):
        V.LR.check("--lr", math.nan)
    with pytest.raises(MinitronError, match=r"--tolerance must be a number in \[0, 1\), got 1"):
        V.TOLERANCE.check("--tolerance", 1)
    assert V.SAMPLES.check("--samples", None) is None and V.SEED.describe() == "an integer in [0, 4294967295]"
    assert V.Bound(lo=0, lo_open=True, integer=False).describe() == "a number > 0"


def test_int_lists():
    assert V.parse_int_list("--block-sizes", "1, 2,8", V.BLOCK_SIZE) == (1, 2, 8)
    for text, message in (("", "comma-separated"), ("1,,2", "comma-separated"), ("a", "comma-separated"),
                          ("1,0", r"must be an integer in \[1, 4096\], got 0")):
        with pytest.raises(MinitronError, match=message):
            V.parse_int_list("--block-sizes", text, V.BLOCK_SIZE)


def test_every_numeric_option_of_every_command_has_a_rule():
    """An int or float option without a callback would accept anything: each must check its range."""
    import types
    import typing

    from cli import app

    checked, missing = 0, []
    for command in app.registered_commands:
        hints = typing.get_type_hints(command.callback, include_extras=True)
        for name, hint in hints.items():
            if typing.get_origin(hint) is not typing.Annotated:
                continue
            base, info = typing.get_args(hint)[0], typing.get_args(hint)[1]
            kinds = set(typing.get_args(base)) if isinstance(base, types.UnionType) else {base}
            if kinds & {int, float}:
                checked += 1
                if getattr(info, "callback", None) is None:
                    missing.append(f"{command.callback.__name__} --{name}")
    assert checked >= 30 and missing == []  # 35 when written
