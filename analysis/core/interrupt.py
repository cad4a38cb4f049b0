"""Ctrl-C during a long run: finish the current step, save a checkpoint, then stop.

A KeyboardInterrupt can land anywhere, e.g. half-way through folding a batch into the running
statistics, and a checkpoint saved from there would be inconsistent. Inside ``deferred_interrupt``
the first SIGINT only sets ``StopRequest.requested``; the loop looks at it between steps, saves a
checkpoint from a consistent state and raises ``Interrupted`` (exit 130, with the way to resume).
A second Ctrl-C stops at once (the last periodic checkpoint stays). Outside the main thread,
where signal handlers cannot be installed, SIGINT keeps Python's default behaviour.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopRequest:
    """Set by the first Ctrl-C; loops check ``requested`` between steps."""

    def __init__(self):
        self.requested = False


@contextmanager
def deferred_interrupt(what: str = "step") -> Iterator[StopRequest]:
    """Defer the first SIGINT to the end of the current ``what`` (see the module docstring)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        sys.stderr.write(f"\nCtrl-C: saving a checkpoint after the current {what} (Ctrl-C again to stop now)\n")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
