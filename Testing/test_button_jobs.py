"""The button-job helper both module widgets use: Cancel label while running, cancel on a second click,
errors to the given display, the label and the idle state restored whatever happens."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

from FastMRICommon.button_jobs import ButtonJobs
from FastMRICommon.errors import InputError, raise_if_cancelled


class Recorder:
    """What the widget would see: refresh calls (with the running button) and error messages."""

    def __init__(self) -> None:
        self.refreshed: list = []
        self.errors: list[tuple[str, str]] = []
        self.cancelled = 0

    @contextmanager
    def display(self, label: str):  # like slicer.util.tryWithErrorDisplay: shows the error, swallows it
        try:
            yield
        except Exception as error:  # noqa: BLE001 - the display takes every error, as Slicer's does
            self.errors.append((label, str(error)))


def make(recorder: Recorder) -> ButtonJobs:
    jobs = ButtonJobs(lambda: recorder.refreshed.append(jobs.running))
    return jobs


def test_a_job_runs_with_a_cancel_label_and_returns_its_result():
    recorder, button = Recorder(), SimpleNamespace(text="Reconstruct")
    jobs = make(recorder)
    seen = []

    def job(progress, cancel):
        seen.append((button.text, jobs.idle, cancel()))
        progress(0.5, "half")
        return "volume"

    progress = []
    assert jobs.run(button, job, lambda f, m: progress.append((f, m)), recorder.display, "Cancel",
                    lambda: None) == "volume"
    assert seen == [("Cancel", False, False)] and progress == [(0.5, "half")]
    assert button.text == "Reconstruct" and jobs.idle and recorder.refreshed == [button, None]
    assert not jobs.request_cancel()  # nothing runs: a click starts a job instead


def test_a_second_click_cancels_and_nothing_is_returned():
    recorder, button = Recorder(), SimpleNamespace(text="Estimate")
    jobs = make(recorder)
    steps = []

    def job(progress, cancel):
        for step in range(10):
            raise_if_cancelled(cancel)
            steps.append(step)
            if step == 2:
                assert jobs.request_cancel()  # the user clicks Cancel while step 2 runs
        return "maps"

    def cancelled():
        recorder.cancelled += 1

    assert jobs.run(button, job, lambda f, m: None, recorder.display, "Cancel", cancelled) is None
    assert steps == [0, 1, 2] and recorder.cancelled == 1 and not recorder.errors
    assert button.text == "Estimate" and jobs.idle


def test_an_error_goes_to_the_display_with_the_button_label_and_the_widget_is_idle_again():
    recorder, button = Recorder(), SimpleNamespace(text="Simulate")
    jobs = make(recorder)

    def job(progress, cancel):
        raise InputError("the volume is constant: nothing to simulate")

    assert jobs.run(button, job, lambda f, m: None, recorder.display, "Cancel", lambda: None) is None
    assert recorder.errors == [("Simulate", "the volume is constant: nothing to simulate")]
    assert button.text == "Simulate" and jobs.idle and recorder.refreshed[-1] is None
    # the next job starts afresh (an earlier cancel request does not leak into it)
    jobs.cancel_requested = True
    assert jobs.run(button, lambda progress, cancel: cancel(), lambda f, m: None, recorder.display, "Cancel",
                    lambda: None) is False
