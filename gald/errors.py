"""The project's error types, and how commands report them.

* :class:`GaldError` — a **user error**: bad input, config or flag, missing data, an unreadable or
  wrong file. Its message is one line that names the file or key. Every ``python -m gald.*``
  command and data script prints it as ``<prog>: error: <message>`` and exits with code 2, without
  a traceback unless ``--debug`` is given. Subclasses also derive from the built-in type such an
  error used to be (``ValueError``, ``KeyError``, ``OSError``), so ``except ValueError`` keeps working.
* :class:`RunStopped` — an **operational stop** (a non-finite loss or model state, a full disk):
  one line saying what was kept, exit code 1.
* Anything else is a bug or an environment failure and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "GaldError", "ConfigError", "InputFileError", "MissingFileError", "CheckpointError", "PlugError", "OutputExistsError",
    "GroupTimeoutError", "RunStopped", "CheckpointWriteError", "NonFiniteStop", "HelpFormatter",
    "add_debug_argument", "command_errors",
]


class GaldError(Exception):
    """A user error; the message is one line naming the file or key."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""  # KeyError subclasses would quote it


class ConfigError(GaldError, ValueError):
    """A config key or flag value that is unknown, of the wrong type or out of range."""


class InputFileError(GaldError, OSError):
    """An input file or folder that is missing or cannot be read."""


class MissingFileError(InputFileError, FileNotFoundError):
    """An input file or folder that does not exist."""


class CheckpointError(GaldError, ValueError):
    """A checkpoint that is empty, truncated, not a checkpoint, or not the kind the command needs."""


class PlugError(GaldError, ValueError):
    """A GALD block that cannot go where it was asked (:func:`gald.plug`): no such module, no
    feature map there, channels the GA module cannot take, or a model plugged already."""


class OutputExistsError(GaldError, FileExistsError):
    """An output that would replace an existing file, an input or a run without being asked to."""


class GroupTimeoutError(GaldError, TimeoutError):
    """Distributed processes that did not form a group in time (a node not started, a wrong endpoint)."""


class RunStopped(Exception):
    """An operational stop; the message says what was kept."""


class CheckpointWriteError(RunStopped, OSError):
    """A checkpoint could not be written (e.g. a full disk); the previous file is kept."""


class NonFiniteStop(RunStopped, FloatingPointError):
    """Training stopped at a non-finite loss or model state; the last finite checkpoint is kept."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` of every command: the description as written, and each flag's default after its
    help (unless the help already says it, the flag is required or a switch, or it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction))
        if (switch or action.required or action.default in (None, argparse.SUPPRESS) or "default" in text.lower()
                or not action.option_strings):
            return text
        default = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{text} (default: {str(default).replace('%', '%%')})"


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of a refused input or a stopped run instead of one line")


@contextmanager
def command_errors(prog: str, *, debug: bool = False) -> Iterator[None]:
    """Report a :class:`GaldError` as one line with exit code 2 and a :class:`RunStopped` as one
    line with exit code 1; with ``debug`` (or for any other exception) the traceback is kept."""
    try:
        yield
    except GaldError as err:
        if debug:
            raise
        sys.stderr.write(f"{prog}: error: {err}\n")
        raise SystemExit(2) from None
    except RunStopped as err:
        if debug:
            raise
        sys.stderr.write(f"{prog}: stopped: {err}\n")
        raise SystemExit(1) from None
