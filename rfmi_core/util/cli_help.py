"""What every ``python -m`` command of the pack shares: --help that states each option's default, and errors that read
like errors (one line saying what to do, no traceback unless ``--debug``)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn, Sequence

__all__ = ["DefaultsHelpFormatter", "CommandParser", "UsageError", "USER_ERRORS", "DEBUG_FLAG", "run_cli",
           "positive_int", "non_negative_int", "positive_float", "non_negative_float", "open_unit", "probability",
           "finite_float", "NUMBER_TYPES"]

DEBUG_FLAG = "--debug"
EXIT_USAGE = 2  # argparse's exit status for a bad command line; ours for every user error


class UsageError(Exception):
    """A mistake in what the user gave a command (a folder that is not a set, a model that cannot be loaded); the
    message says what to do. ``run_cli`` prints it as one line."""


# Errors that bad input raises (a wrong path, a value out of range): one line, not a traceback. Anything else is a bug
# and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                                                 PermissionError, ValueError)


def _number(kind: type, low: float | None, low_open: bool, high: float | None, high_open: bool, what: str):
    """An argparse ``type`` that reads a ``kind`` and refuses values outside the range (argparse turns the
    ArgumentTypeError into one line, exit status 2, before the command does any work)."""

    def read(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value != value or value in (float("inf"), float("-inf")) or (low is not None and (value <= low if low_open else value < low)) or (
                high is not None and (value >= high if high_open else value > high)):
            raise argparse.ArgumentTypeError(f"{text} is not {what}")
        return value

    read.__name__ = what.replace(" ", "_")
    return read


positive_int = _number(int, 1, False, None, False, "a whole number ≥ 1")
non_negative_int = _number(int, 0, False, None, False, "a whole number ≥ 0")
positive_float = _number(float, 0, True, None, False, "a number > 0")
non_negative_float = _number(float, 0, False, None, False, "a number ≥ 0")
open_unit = _number(float, 0, True, 1, True, "a number strictly between 0 and 1")
probability = _number(float, 0, False, 1, False, "a number between 0 and 1")
finite_float = _number(float, None, False, None, False, "a number")
NUMBER_TYPES = (positive_int, non_negative_int, positive_float, non_negative_float, open_unit, probability, finite_float)
"""The range-checked number types every numeric flag of the pack's commands uses (a test checks there is no bare
int or float)."""


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help, unless the help already names its default or the default is
    None or False (an option that is off, or whose absence the help explains)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line ("PROG: error: ...; see PROG --help") and whose --help lists
    ``--debug`` (``run_cli`` reads it)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument(DEBUG_FLAG, action="store_true",
                          help="on an error, show the full traceback instead of one line")

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def error_line(prog: str, error: BaseException) -> str:
    """``error`` as one line: its message with line breaks folded, and the flag that shows the traceback."""
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, FileNotFoundError) and error.filename and str(error.filename) not in message:
        message = f"{message}: {error.filename}"
    return f"{prog}: error: {message} (run again with {DEBUG_FLAG} for the traceback)"


def run_cli(main: Callable[[list[str]], int | None], prog: str, argv: Sequence[str] | None = None) -> NoReturn:
    """Runs ``main(argv)`` as a command and exits with its status. A user error (``USER_ERRORS``) prints one line on
    stderr and exits with 2; with ``--debug`` in argv it is raised with its traceback. ``--debug`` is taken out of
    argv before ``main`` sees it, so any parser works under this wrapper."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        status = main(args)
    except USER_ERRORS as error:
        if debug:
            raise
        print(error_line(prog, error), file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(status or 0)
