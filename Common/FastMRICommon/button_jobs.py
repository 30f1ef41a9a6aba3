"""A long job started from a module's button: while it runs the button reads *Cancel*, and a second click
asks the job to stop. Shared by the FastMRRecon and IVIMEstimator widgets; it imports no qt, so it is tested
outside Slicer. The job itself follows the progress/cancel protocol of ``errors``."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from .errors import CancelCheck, Cancelled, ProgressCallback

T = TypeVar("T")


class ButtonJobs:
    """Which button's job runs (at most one at a time) and whether Cancel was clicked.

    ``refresh()`` is called whenever that changes, so the widget can enable and disable its buttons (while a
    job runs, only its own button, reading Cancel, should stay enabled: see :meth:`enabled`).
    """

    def __init__(self, refresh: Callable[[], None]) -> None:
        self.running: Any = None  # the button whose job runs, or None
        self.cancel_requested = False
        self._refresh = refresh

    @property
    def idle(self) -> bool:
        return self.running is None

    def enabled(self, button: Any, ready: bool) -> bool:
        """Whether ``button`` is enabled: its own running job can always be cancelled; otherwise it needs no
        other job running and its inputs ``ready``."""
        return button is self.running or (self.running is None and bool(ready))

    def request_cancel(self, button: Any = None) -> bool:
        """A click on ``button`` while a job may run: False when no job runs (the click starts one). Otherwise
        True (the click must not start another job), and the running job is asked to stop only when it is
        ``button``'s own (None: whichever runs), so one button never cancels another's job."""
        if self.running is None:
            return False
        if button is None or button is self.running:
            self.cancel_requested = True
        return True

    def run(
        self,
        button: Any,
        job: Callable[[ProgressCallback, CancelCheck], T],
        progress: ProgressCallback,
        error_display: Callable[[str], AbstractContextManager],
        cancel_text: str,
        cancelled: Callable[[], None],
    ) -> T | None:
        """Run ``job(progress, cancel)`` with ``button`` relabelled ``cancel_text``; errors go to
        ``error_display(button label)`` (a context manager, e.g. Slicer's message box), a cancelled job calls
        ``cancelled()``. Returns the job's result, or None when it failed or was cancelled. The button gets
        its label back, whatever happens.

        ``slicer.util.tryWithErrorDisplay`` shows the error and then raises it again (``Base/Python/slicer/
        util.py`` at v5.8.1 and v5.10.0), so the error is caught here, after the display has shown it."""
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
        except Exception:  # noqa: BLE001 - the display has shown it; the caller only needs "no result"
            return None
        finally:
            button.text = label
            self.running, self.cancel_requested = None, False
            self._refresh()
