"""Exception types and the progress/cancel protocol shared by every long-running function.

``InputError`` marks a problem with what the user gave (a file, a node, a parameter): the command lines
print it as one line and exit with code 2, the Slicer modules show it in a message box. Anything else
is a failure of the program (exit code 1).
"""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(fraction, message)``: fraction in [0, 1] of the whole job, message for a status line.
ProgressCallback = Callable[[float, str], None]
#: ``cancel()`` returns True when the user asked to stop; long loops poll it between steps.
CancelCheck = Callable[[], bool]


class InputError(ValueError):
    """Bad input from the user: wrong shape, type, values, or an unreadable file."""


class ModelFileError(InputError):
    """A model file is missing, corrupt, of the wrong kind, or does not match its manifest."""


class Cancelled(RuntimeError):
    """The user cancelled a long-running job; partial results are discarded."""


def report(progress: ProgressCallback | None, fraction: float, message: str) -> None:
    """Call ``progress`` when one was given, clamping ``fraction`` to [0, 1]."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def raise_if_cancelled(cancel: CancelCheck | None) -> None:
    """Raise :class:`Cancelled` when ``cancel`` says the user asked to stop."""
    if cancel is not None and cancel():
        raise Cancelled("cancelled by the user")
