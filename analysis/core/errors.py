"""User-facing errors: one line, no traceback, non-zero exit (see cli.main)."""


class MinitronError(Exception):
    """A problem the user can fix (bad input, missing weights, impossible target).

    The CLI prints ``error: <message>`` on one line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class WeightsNotFound(MinitronError):
    """The architecture is known but its weights are not on this machine."""
