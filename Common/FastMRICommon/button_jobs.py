"""A long job started from a module's button: while it runs the button reads *Cancel*, and a second click
asks the job to stop. Shared by the FastMRRecon and IVIMEstimator widgets; it imports no qt, so it is tested
outside Slicer. The job itself follows the progress/cancel protocol of ``errors``."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable, Optional, TypeVar

from .errors import CancelCheck, Cancelled, ProgressCallback

T = TypeVar("T")


class ButtonJobs:
    """Which button's job runs (at most one at a time) and whether Cancel was clicked.

    ``refresh()`` is called whenever that changes, so the widget can enable and disable its buttons.
    """

    def __init__(self, refresh: Callable[[], None]) -> None:
        self.running: Any = None  # the button whose job runs, or None
        self.cancel_requested = False
        self._refresh = refresh

    @property
    def idle(self) -> bool:
        return self.running is None

    def request_cancel(self) -> bool:
        """Ask the running job to stop; False (nothing asked) when no job runs."""
        if self.running is None:
            return False
        self.cancel_requested = True
        return True

    def run(self, button: Any, job: Callable[[ProgressCallback, CancelCheck], T], progress: ProgressCallback,
            error_display: Callable[[str], AbstractContextManager], cancel_text: str,
            cancelled: Callable[[], None]) -> Optional[T]:
        """Run ``job(progress, cancel)`` with ``button`` relabelled ``cancel_text``; errors go to
        ``error_display(button label)`` (a context manager, e.g. Slicer's message box), a cancelled job calls
        ``cancelled()``. Returns the job's result, or None when it failed or was cancelled. The button gets
        its label back, whatever happens."""
        label = button.text
        self.running, self.cancel_requested = button, False
        button.text = cancel_text
        self._refresh()
        try:
            with error_display(label):
                try:
                    return job(progress, lambda: self.cancel_requested)
                except Cancelled:
                    cancelled()
            return None
        finally:
            button.text = label
            self.running = None
            self._refresh()
