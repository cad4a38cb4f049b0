"""Minitron Lab command line: wires the library together, holds no logic of its own.

    python cli.py models [--json]
    python cli.py analyze [--model NAME] [--data SRC] ...
    python cli.py bench [--model NAME] [--random-init] [--seq-len T] [--batch-size auto|N] [--json]
    torchrun --nproc-per-node N cli.py analyze ...
    python cli.py perplexity [--model NAME] [--data SRC] [--protocol hf-stride|lm-eval] [--seq-len T]
    python cli.py figures [--run DIR] [--out DIR]
    python cli.py card (--model M | --all) [--out DIR] [--template T] [--format md|html]
    python cli.py card --check PATH [--model M]
    python cli.py distill --student DIR [--teacher NAME] [--steps N] [--finetune] ...
    python cli.py prune --model TEACHER [--target 8B | --hidden H --ffn F --heads N --layers L] --out DIR
    python cli.py search --model 15B --params 8B [--rank --run DIR --retrain-steps N] [--out DIR]
    python cli.py perplexity [--model M] [--data SRC] [--protocol hf-stride|lm-eval]
    python cli.py experiment NAME [--seeds N] [--small] [--estimate]
    python cli.py experiment --report [--check]
    python cli.py evaluate --model M --tasks T1,T2 [--num-fewshot K | --paper-settings] [--limit N]
    python cli.py compare --teacher T --student S [--baseline B] [--data SRC]
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from contextlib import contextmanager

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer

from analysis.core.errors import MinitronError, MinitronWarning, one_line

# isort: off
from cli_commands import measure, compress, publish  # noqa: F401 - registers the commands on app, in this order
# isort: on
from cli_commands.options import DEBUG, app, say


# --- running a command: one line per failure, never a traceback (unless --debug) ----------------------
def _click_exceptions():
    """(ClickException, Abort, Exit) of the click that typer runs on (recent typer vendors its own copy
    and keeps Abort and Exit in ``typer.exceptions``)."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return (exceptions.ClickException, getattr(exceptions, "Abort", typer.Abort),
            getattr(exceptions, "Exit", typer.Exit))


INTERRUPTED = 130  # typer turns Ctrl-C into exit code 130 without a word; older click into Abort


@contextmanager
def _warnings_as_lines():
    """Our warnings as one ``warning: ...`` line each on stderr (a corrupt run skipped, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", MinitronWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, MinitronWarning):
                say(f"warning: {message}")
            else:
                previous(message, category, filename, lineno, file, line)
        warnings.showwarning = show
        yield


def _fail(message: str, code: int) -> int:
    if DEBUG["on"]:
        traceback.print_exc()
    say(f"error: {message}")
    return code


def run(argv: list[str] | None = None) -> int:
    """Run one command; every failure becomes one line on stderr and a non-zero exit code (returned)."""
    click_error, abort, exit_ = _click_exceptions()
    DEBUG["on"] = bool(os.environ.get("MINITRON_DEBUG"))
    interrupted = ("interrupted; nothing half-written was left behind (analyze and distill continue from their "
                   "last checkpoint, if they wrote one, with --resume)")
    with _warnings_as_lines():
        try:
            code = app(args=argv, standalone_mode=False)  # without standalone mode, typer.Exit(n) comes back as n
            if code == INTERRUPTED:
                return _fail(interrupted, INTERRUPTED)
            return code if isinstance(code, int) else 0
        except MinitronError as exc:  # Interrupted (a run that saved its checkpoint) is one: exit 130
            return _fail(str(exc), exc.exit_code)
        except (KeyboardInterrupt, abort):
            return _fail(interrupted, INTERRUPTED)
        except click_error as exc:  # usage errors: bad option, missing option, no such command
            return _fail(one_line(exc.format_message()), exc.exit_code)
        except exit_ as exc:
            return exc.exit_code
        except SystemExit as exc:  # typer's answer to a closed stdout (``... | head``): quiet, exit 1
            return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except MemoryError:
            return _fail("out of memory; use a smaller model, fewer or shorter samples, or a smaller batch", 1)
        except OSError as exc:  # disk full, permission denied, vanished file: the file and the reason
            where = f"{exc.filename}: " if exc.filename else ""
            return _fail(f"{where}{exc.strerror or one_line(exc)}", 1)
        except Exception as exc:  # noqa: BLE001 - a bug of ours: still one line, with the way to see more
            return _fail(f"unexpected {type(exc).__name__}: {one_line(exc)} (a bug in minitron-lab; rerun with "
                         "--debug for the traceback and report it)", 1)


def main() -> None:
    """Entry point (``python cli.py`` and the ``minitron-lab`` script)."""
    sys.exit(run())


if __name__ == "__main__":
    main()
