"""The widget helpers both modules use. Button jobs: Cancel label while running, cancel on a second click
(of that button only), errors to the given display, the label and the idle state restored whatever happens.
GUI binding: one parameter-node binding at a time, on Slicer 5.8 and 5.10; the point list Slicer places into
once the module's list is full."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import vtk
from conftest import placing_scene

from FastMRICommon.button_jobs import ButtonJobs
from FastMRICommon.errors import InputError, raise_if_cancelled
from FastMRICommon.gui_binding import ParameterGui, placing_point_list


class Recorder:
    """What the widget would see: refresh calls (with the running button) and error messages."""

    def __init__(self) -> None:
        self.refreshed: list = []
        self.errors: list[tuple[str, str]] = []
        self.cancelled = 0

    @contextmanager
    def display(self, label: str):
        """Like ``slicer.util.tryWithErrorDisplay`` (``Base/Python/slicer/util.py`` at v5.8.1 and v5.10.0):
        shows every error, then raises it again."""
        try:
            yield
        except Exception as error:  # noqa: BLE001 - the display takes every error, as Slicer's does
            self.errors.append((label, str(error)))
            raise


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
    assert (
        jobs.run(button, job, lambda f, m: progress.append((f, m)), recorder.display, "Cancel", lambda: None)
        == "volume"
    )
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
    assert (
        jobs.run(button, lambda progress, cancel: cancel(), lambda f, m: None, recorder.display, "Cancel", lambda: None)
        is False
    )


def test_a_program_error_is_shown_once_and_run_returns_none():
    recorder, button = Recorder(), SimpleNamespace(text="Reconstruct")
    jobs = make(recorder)

    def job(progress, cancel):
        raise RuntimeError("CUDA out of memory")

    assert jobs.run(button, job, lambda f, m: None, recorder.display, "Cancel", lambda: None) is None
    assert recorder.errors == [("Reconstruct", "CUDA out of memory")]
    assert button.text == "Reconstruct" and jobs.idle and recorder.refreshed == [button, None]


def test_one_buttons_click_never_cancels_another_buttons_job():
    recorder = Recorder()
    reconstruct, simulate = SimpleNamespace(text="Reconstruct"), SimpleNamespace(text="Simulate")
    jobs = make(recorder)
    seen = []

    def job(progress, cancel):
        # while Reconstruct runs: Simulate is disabled, and a click on it (queued before) is ignored
        seen.append((jobs.enabled(reconstruct, True), jobs.enabled(simulate, True)))
        assert jobs.request_cancel(simulate)  # busy: the click must not start a job ...
        seen.append(cancel())  # ... and does not cancel this one
        assert jobs.request_cancel(reconstruct)  # Reconstruct's own click (it reads Cancel) does
        seen.append(cancel())
        return "volume"

    assert jobs.run(reconstruct, job, lambda f, m: None, recorder.display, "Cancel", lambda: None) == "volume"
    assert seen == [(True, False), False, True]
    assert jobs.enabled(simulate, True) and not jobs.enabled(simulate, False)  # idle: the inputs decide
    assert not jobs.request_cancel(simulate) and not jobs.cancel_requested


# -- the parameter-node binding -------------------------------------------------------------------------------
class Wrapper:
    """What ParameterGui uses of a parameterNodeWrapper object, as ``Base/Python/slicer/parameterNodeWrapper/
    wrapper.py`` does it at v5.10.0 (``returns_tag``) and v5.8.1 (``connectGui`` returns None): ``connectGui``
    connects the GUI's widgets under a new tag and adds a ModifiedEvent observer to the (real) parameter node,
    which ``disconnectGui`` leaves; ``disconnectGui(tag)`` removes the widgets' connections of that tag."""

    def __init__(self, parameter_node, gui: dict, returns_tag: bool) -> None:
        self.parameterNode = parameter_node
        self._parameterGUIs: dict = {}
        self._nextParameterGUIsTag = 0
        self._gui, self._returns_tag = gui, returns_tag

    def connectGui(self, gui):
        assert gui is self._gui
        tag = self._nextParameterGUIsTag
        self._nextParameterGUIsTag += 1
        self._parameterGUIs[tag] = gui
        gui["connections"] += 1
        gui["observers"].append(self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda *args: None))
        return tag if self._returns_tag else None

    def disconnectGui(self, tag):
        if tag in self._parameterGUIs:
            self._parameterGUIs.pop(tag)["connections"] -= 1


@pytest.mark.parametrize("returns_tag", [True, False], ids=["Slicer 5.10", "Slicer 5.8"])
def test_the_gui_is_bound_once_per_parameter_node_and_unbound_on_either_slicer(scene, returns_tag):
    gui = {"connections": 0, "observers": []}
    first, second = (scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", name) for name in ("first", "second"))
    binding = ParameterGui(gui)
    wrapper = Wrapper(first, gui, returns_tag)
    assert binding.bind(wrapper) is wrapper and gui["connections"] == 1
    for _ in range(3):  # the user leaves and enters the module again: each entry wraps the node anew
        assert binding.bind(Wrapper(first, gui, returns_tag)) is wrapper
    assert gui["connections"] == 1 and len(gui["observers"]) == 1  # nothing piled up
    assert binding.bind(None) is None and gui["connections"] == 0  # the scene closes
    other = Wrapper(second, gui, returns_tag)
    assert binding.bind(other) is other and gui["connections"] == 1
    assert binding.bind(Wrapper(first, gui, returns_tag)).parameterNode is first  # another node: rebound
    assert gui["connections"] == 1 and not other._parameterGUIs
    binding.unbind()
    assert gui["connections"] == 0 and binding.node is None


# -- the point list Slicer places into --------------------------------------------------------------------------
def test_placing_follows_the_new_point_list_slicer_makes_once_the_list_is_full(scene):
    application, markups = placing_scene(scene)
    selection, interaction = application.GetSelectionNode(), application.GetInteractionNode()
    points = markups.AddNewMarkupsNode("vtkMRMLMarkupsFiducialNode", "ROI points")
    points.SetMaximumNumberOfControlPoints(3)
    markups.SetActiveList(points)  # what the place widget does
    interaction.SetCurrentInteractionMode(interaction.Place)
    followed = [points]  # as the module does: the list it reads, then each list it followed

    def on_active_place_node_changed(caller, event):
        successor = placing_point_list(scene, followed[-1])
        if successor is not None:
            followed.append(successor)

    selection.AddObserver(selection.ActivePlaceNodeIDChangedEvent, on_active_place_node_changed)
    for index in range(3):
        points.AddControlPoint(vtk.vtkVector3d(index, 0.0, 0.0))
    assert placing_point_list(scene, points) is None  # still placing into it
    # a 4th click: vtkMRMLMarkupsDisplayableManager::GetWidgetForPlacement makes a new list and activates it
    successor = markups.AddNewMarkupsNode("vtkMRMLMarkupsFiducialNode")
    selection.SetReferenceActivePlaceNodeID(successor.GetID())
    assert followed == [points, successor]


def test_placing_does_not_follow_a_list_chosen_for_another_reason(scene):
    application, markups = placing_scene(scene)
    selection, interaction = application.GetSelectionNode(), application.GetInteractionNode()
    points = markups.AddNewMarkupsNode("vtkMRMLMarkupsFiducialNode", "ROI points")
    points.SetMaximumNumberOfControlPoints(3)
    markups.SetActiveList(points)
    interaction.SetCurrentInteractionMode(interaction.Place)
    points.AddControlPoint(vtk.vtkVector3d(0.0, 0.0, 0.0))
    other = markups.AddNewMarkupsNode("vtkMRMLMarkupsFiducialNode", "landmarks")
    selection.SetReferenceActivePlaceNodeID(other.GetID())
    assert placing_point_list(scene, points) is None  # not full: the user chose another list
    for index in (1, 2):
        points.AddControlPoint(vtk.vtkVector3d(index, 0.0, 0.0))
    other.AddControlPoint(vtk.vtkVector3d(5.0, 0.0, 0.0))
    assert placing_point_list(scene, points) is None  # an existing list with points, not a new one
    line = markups.AddNewMarkupsNode("vtkMRMLMarkupsLineNode")
    selection.SetReferenceActivePlaceNodeID(line.GetID())
    assert placing_point_list(scene, points) is None  # another kind of markup
    empty = markups.AddNewMarkupsNode("vtkMRMLMarkupsFiducialNode")
    selection.SetReferenceActivePlaceNodeID(empty.GetID())
    interaction.SetCurrentInteractionMode(interaction.ViewTransform)
    assert placing_point_list(scene, points) is None  # not placing
    interaction.SetCurrentInteractionMode(interaction.Place)
    assert placing_point_list(scene, points) is empty
    assert placing_point_list(scene, None) is None
