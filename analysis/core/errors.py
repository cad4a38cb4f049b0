"""User-facing errors and warnings: one line, no traceback, non-zero exit (see ``cli.run``)."""

from __future__ import annotations

import warnings


class MinitronError(Exception):
    """A problem the user can fix (bad input, missing weights, impossible target).

    The CLI prints ``error: <message>`` on one line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(" ".join(str(message).split()))  # one line, whatever the message was built from
        if exit_code is not None:
            self.exit_code = exit_code


class WeightsNotFound(MinitronError):
    """The architecture is known but its weights are not on this machine."""


class Interrupted(MinitronError):
    """The user stopped a run (Ctrl-C); the message says where its checkpoint is and how to resume."""

    exit_code = 130


class MinitronWarning(UserWarning):
    """Something the user should know that does not stop the command (the CLI prints ``warning: ...``)."""


def warn(message: str) -> None:
    """Emit a ``MinitronWarning`` (one line on stderr under the CLI)."""
    warnings.warn(MinitronWarning(" ".join(message.split())), stacklevel=2)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (the first line that says something), for wrapping errors."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
