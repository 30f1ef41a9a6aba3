"""The command-line harness shared by ``fastmrrecon`` and ``ivimestimator``.

Exit codes: 0 success, 1 failure of the program, 2 bad input (argparse usage errors included), 130 cancelled
(Ctrl-C). A user error is printed as one line, ``<prog>: error: <reason>``, without a traceback; ``-v`` (before
or after the command name) adds debug logging and the traceback of unexpected failures.

Outputs never overwrite inputs (:func:`check_outputs`); an existing output file is replaced, and only once the
new one is complete (the writers of ``mrml_bridge`` write atomically).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .errors import Cancelled, InputError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130

#: A subcommand: takes the parsed arguments, returns an exit code (None means 0).
Command = Callable[[argparse.Namespace], int | None]


def common_options() -> argparse.ArgumentParser:
    """Options the program and every subcommand accept (use as ``parents=[common_options()]`` for both), so that
    ``prog -v COMMAND`` and ``prog COMMAND -v`` are the same. Their defaults are left out of the namespace
    (``argparse.SUPPRESS``): a subcommand's default would otherwise overwrite the value given before it."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging and full tracebacks"
    )
    return parent


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand (stored as ``args.command``); return the exit code."""
    args = parser.parse_args(argv)
    if getattr(args, "command", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", force=True)
    _quiet_vtk(verbose)
    name = getattr(args.command, "__name__", "").removeprefix("cmd_").replace("_", "-")
    logging.getLogger(parser.prog).debug(
        "%s %s: arguments %s",
        parser.prog,
        name,
        ", ".join(f"{key}={value}" for key, value in vars(args).items() if key not in ("command", "verbose")),
    )
    try:
        code = args.command(args)
        return EXIT_OK if code is None else int(code)
    except InputError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        print(f"{parser.prog}: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as error:  # the last line of defence: one line, the traceback only with -v
        if verbose:
            traceback.print_exc()
        print(f"{parser.prog}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE


def _quiet_vtk(verbose: bool) -> None:
    """Keep VTK's own log lines off the terminal unless debugging: our errors say what went wrong."""
    if verbose:
        return
    try:
        import vtk

        vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)
        vtk.vtkObject.GlobalWarningDisplayOff()
    except ImportError:  # the commands that need VTK fail later with their own message
        pass


def check_outputs(inputs: Iterable[str | os.PathLike], outputs: Iterable[str | os.PathLike]) -> None:
    """One-line InputError when an output names one of the inputs (under any spelling or link) or a folder:
    a command may replace an existing output file, never an input."""
    sources = [Path(path) for path in inputs]
    for output in (Path(path) for path in outputs):
        if output.is_dir():
            raise InputError(f"the output {output} is a folder: give a file name")
        for source in sources:
            if _same_file(output, source):
                raise InputError(f"the output {output} is the input {source}: write the output to another file")


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return first.resolve() == second.resolve()


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value
