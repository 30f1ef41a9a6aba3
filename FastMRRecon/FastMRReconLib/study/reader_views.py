"""What a reader sees in a blinded study: a 1 x N side-by-side layout of slice views labelled only A, B, C,
each showing one version of the case, with linked navigation; and the same view rendered to a PNG.

The reader layout reuses the Red, Yellow and Green slice views, which always exist in Slicer. The layout
logic (``Libs/MRML/Logic/vtkMRMLLayoutLogic.cxx``, ``CreateMissingViews`` and ``ApplyProperties``, at v5.8.1
and v5.10.0) applies a view property marked ``action="default"`` only to a view it creates and one marked
``action="relayout"`` only to a view that exists; a property without ``action`` is applied in both cases.
So the reader layout's orientation and labels carry no ``action``, and since they stay on the views after
the layout is left (the conventional layout sets its R/Y/G labels and orientations as defaults only),
:class:`SavedViews` keeps the views' state before the study and restores it afterwards.

The layout description, the slice-composite setup, the saved views and the view arrangement are plain MRML
(tested without the application). :class:`ReaderLayout` enters and leaves the reader layout; given Slicer's
layout manager and DataProbe's slice annotations (GUI objects, used through their Python API only), it also
hides and restores what only the GUI has: view controllers, corner annotations.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from FastMRICommon.errors import InputError

#: Id of the reader-study layout (an id no Slicer built-in layout uses).
READER_LAYOUT_ID = 5901
#: Slice views used for the blinded images, left to right.
VIEW_NAMES = ("Red", "Yellow", "Green")
_VIEW_COLOURS = {"Red": "#F34A33", "Yellow": "#EDD54C", "Green": "#6EB04B"}


def reader_layout_xml(labels: Sequence[str], orientation: str = "Axial") -> str:
    """Slicer layout XML: one row of slice views, one per label (at most three), each labelled by it and in
    ``orientation``, whether the view exists already or not (no ``action``: module docstring)."""
    if not 1 <= len(labels) <= len(VIEW_NAMES):
        raise InputError(f"the reader layout shows 1 to {len(VIEW_NAMES)} images, got {len(labels)}")
    items = "".join(
        f'<item><view class="vtkMRMLSliceNode" singletontag="{name}">'
        f'<property name="orientation">{orientation}</property>'
        f'<property name="viewlabel">{label}</property>'
        f'<property name="viewcolor">{_VIEW_COLOURS[name]}</property>'
        "</view></item>"
        for name, label in zip(VIEW_NAMES, (escape(str(label)) for label in labels))
    )
    return f'<layout type="horizontal">{items}</layout>'


def install_reader_layout(layout_node: Any | None, labels: Sequence[str] = "ABC") -> bool:
    """Register (or update) the reader layout ``READER_LAYOUT_ID`` in ``layout_node``; False when there is
    none (Slicer without a main window, e.g. ``--no-main-window`` in the generic module tests, has no layout
    manager), where the reader study cannot be shown."""
    if layout_node is None:
        return False
    description = reader_layout_xml(labels)
    if not layout_node.SetLayoutDescription(READER_LAYOUT_ID, description):
        layout_node.AddLayoutDescription(READER_LAYOUT_ID, description)
    return True


def _slice_node(scene: Any, name: str) -> Any | None:
    return next((node for node in _nodes(scene, "vtkMRMLSliceNode") if node.GetLayoutName() == name), None)


def _composite_node(scene: Any, name: str) -> Any | None:
    return next((node for node in _nodes(scene, "vtkMRMLSliceCompositeNode") if node.GetLayoutName() == name), None)


@dataclass(frozen=True)
class _ViewState:
    name: str
    default_orientation: str
    slice_to_ras: tuple[float, ...]
    field_of_view: tuple[float, float, float]
    label: str
    color: tuple[float, float, float]
    layers: tuple[str | None, str | None, str | None, bool] | None  # background, foreground, label, linked


@dataclass(frozen=True)
class SavedViews:
    """The reader views' state before a study: slice orientation (default and current, with the slice
    position), field of view, view label and colour, and what the views showed (volumes, linked navigation).
    ``SavedViews.save(scene)`` before entering the reader layout, ``restore(scene)`` after leaving it."""

    views: tuple[_ViewState, ...]

    @classmethod
    def save(cls, scene: Any) -> SavedViews:
        views = []
        for name in VIEW_NAMES:
            node = _slice_node(scene, name)
            if node is None:
                continue
            matrix = node.GetSliceToRAS()
            composite = _composite_node(scene, name)
            views.append(
                _ViewState(
                    name,
                    node.GetDefaultOrientation() or "",
                    tuple(matrix.GetElement(row, column) for row in range(4) for column in range(4)),
                    tuple(node.GetFieldOfView()),
                    node.GetLayoutLabel() or "",
                    tuple(node.GetLayoutColor()),
                    None
                    if composite is None
                    else (
                        composite.GetBackgroundVolumeID(),
                        composite.GetForegroundVolumeID(),
                        composite.GetLabelVolumeID(),
                        bool(composite.GetLinkedControl()),
                    ),
                )
            )
        return cls(tuple(views))

    def restore(self, scene: Any) -> None:
        """Put the saved state back (volumes only if they are still in the scene)."""
        for view in self.views:
            node = _slice_node(scene, view.name)
            if node is None:
                continue
            was_modifying = node.StartModify()
            node.SetDefaultOrientation(view.default_orientation)
            for index, value in enumerate(view.slice_to_ras):
                node.GetSliceToRAS().SetElement(index // 4, index % 4, value)
            node.SetFieldOfView(*view.field_of_view)
            node.SetLayoutLabel(view.label)
            node.SetLayoutColor(view.color)
            node.UpdateMatrices()
            node.EndModify(was_modifying)
            composite = _composite_node(scene, view.name)
            if composite is not None and view.layers is not None:
                background, foreground, label, linked = view.layers
                composite.SetBackgroundVolumeID(background if background and scene.GetNodeByID(background) else None)
                composite.SetForegroundVolumeID(foreground if foreground and scene.GetNodeByID(foreground) else None)
                composite.SetLabelVolumeID(label if label and scene.GetNodeByID(label) else None)
                composite.SetLinkedControl(linked)


def set_view_arrangement(layout_node: Any, layout_id: int) -> None:
    """Show layout ``layout_id`` (the conventional layout when ``layout_node`` has no such description), as
    Slicer's layout manager does (``qMRMLLayoutManager::setLayout``, ``Libs/MRML/Widgets/qMRMLLayoutManager.cxx``
    at v5.10.0: it only sets the layout node, whose change the manager observes to rebuild the views)."""
    if layout_node.GetViewArrangement() == layout_id:
        return
    if not layout_node.IsLayoutDescription(layout_id):
        layout_id = layout_node.SlicerLayoutConventionalView
    layout_node.RemoveAllMaximizedViewNodes()
    layout_node.SetViewArrangement(layout_id)


def data_probe_annotations(modules: Any) -> Any | None:
    """The DataProbe module's slice-view annotations from ``slicer.modules`` (DataProbe makes them only with
    the main window), or None."""
    info = getattr(getattr(modules, "DataProbeInstance", None), "infoWidget", None)
    return info.sliceAnnotations if info is not None else None


class ReaderLayout:
    """The reader layout on screen while a study is read, and everything it changes put back afterwards.

    :meth:`enter` registers the layout in ``layout_node`` (``install_reader_layout``), saves the reader views
    (:class:`SavedViews`) and the view arrangement, and shows the layout (:func:`set_view_arrangement`); with
    ``layout_manager`` (Slicer's, for ``sliceWidget(name)``) it hides the views' controllers and clears their
    corner annotations, with ``annotations`` (:func:`data_probe_annotations`) it turns DataProbe's slice
    annotations off. :meth:`exit` restores all of it (the views' state after the arrangement, which leaves
    them relabelled: module docstring); it does nothing when the layout is not entered.
    """

    def __init__(
        self, scene: Any, layout_node: Any | None, layout_manager: Any | None = None, annotations: Any | None = None
    ) -> None:
        self.scene, self.layout_node = scene, layout_node
        self.layout_manager, self.annotations = layout_manager, annotations
        self._saved: tuple[SavedViews, int, bool | None] | None = None  # views, arrangement, annotations

    @property
    def entered(self) -> bool:
        return self._saved is not None

    def enter(self) -> None:
        """Show the reader layout (InputError without a layout node: Slicer without its main window)."""
        if self.entered:
            return
        if self.layout_node is None or not install_reader_layout(self.layout_node):
            raise InputError("the reader study needs Slicer's main window (its slice views)")
        views, arrangement = SavedViews.save(self.scene), self.layout_node.GetViewArrangement()
        set_view_arrangement(self.layout_node, READER_LAYOUT_ID)
        enabled = None
        if self.annotations is not None:
            enabled = bool(self.annotations.sliceViewAnnotationsEnabled)
            self.annotations.sliceViewAnnotationsEnabled = False
            self.annotations.updateSliceViewFromGUI()
        self._saved = (views, arrangement, enabled)
        for widget in self._slice_widgets():
            widget.sliceController().setVisible(False)
            widget.sliceView().cornerAnnotation().ClearAllTexts()
            widget.sliceView().forceRender()

    def exit(self) -> None:
        """Put back the view arrangement, the views' state and what :meth:`enter` hid."""
        if self._saved is None:
            return
        views, arrangement, enabled = self._saved
        self._saved = None
        for widget in self._slice_widgets():
            widget.sliceController().setVisible(True)
        if self.annotations is not None and enabled is not None:
            self.annotations.sliceViewAnnotationsEnabled = enabled
            self.annotations.updateSliceViewFromGUI()
        set_view_arrangement(self.layout_node, arrangement)
        views.restore(self.scene)

    def _slice_widgets(self) -> list[Any]:
        if self.layout_manager is None:
            return []
        return [widget for widget in (self.layout_manager.sliceWidget(name) for name in VIEW_NAMES) if widget]


def show_blinded(scene: Any, volume_ids: Sequence[str]) -> list[Any]:
    """Show volume ``volume_ids[n]`` alone (no foreground, no label map) in view ``VIEW_NAMES[n]`` and link
    the views' navigation; returns the slice-composite nodes used. The views must exist (Slicer creates
    them when the layout is shown)."""
    composites = {node.GetLayoutName(): node for node in _nodes(scene, "vtkMRMLSliceCompositeNode")}
    used = []
    for name, volume_id in zip(VIEW_NAMES, volume_ids):
        composite = composites.get(name)
        if composite is None:
            raise InputError(f"the slice view {name!r} does not exist: switch to the reader-study layout first")
        if scene.GetNodeByID(volume_id) is None:
            raise InputError(f"no volume {volume_id!r} in the scene")
        composite.SetBackgroundVolumeID(volume_id)
        composite.SetForegroundVolumeID(None)
        composite.SetLabelVolumeID(None)
        composite.SetLinkedControl(True)
        used.append(composite)
    return used


def _nodes(scene: Any, class_name: str) -> list[Any]:
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(index) for index in range(collection.GetNumberOfItems())]


def common_window(arrays: Sequence[np.ndarray]) -> tuple[float, float]:
    """One grey window (1st to 99.5th percentile of the finite voxels of all versions together) so that no
    version stands out by its display settings; (0, 1) when no voxel is finite."""
    values = np.concatenate([np.asarray(array, float).ravel() for array in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [1, 99.5])
    return float(low), (float(high) if high > low else float(low) + 1.0)


def apply_window(volume_nodes: Sequence[Any], window: tuple[float, float]) -> None:
    """Show every volume node with the same ``window`` (low, high)."""
    for node in volume_nodes:
        display = node.GetDisplayNode()
        if display is None:
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(*window)


def blinded_panel(
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    path: str | os.PathLike,
    window: tuple[float, float],
    title: str = "",
) -> Path:
    """A PNG of 2D ``images`` side by side, labelled only by ``labels``, all in the same grey ``window``
    (low, high), with the Likert scale below: what a reader sees."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from FastMRReconLib.study.reader_study import LIKERT

    if len(images) != len(labels) or not images:
        raise InputError("give one label per image")
    height, width = np.asarray(images[0]).shape
    figure, axes = plt.subplots(
        1, len(images), figsize=(3.2 * len(images), 3.2 * height / width + 0.9), facecolor="black"
    )
    for axis, image, label in zip(np.atleast_1d(axes), images, labels):
        axis.imshow(np.asarray(image), cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
        axis.set_axis_off()
        axis.set_title(label, color="white", fontsize=16)
    scale = "   ".join(f"{score} {text}" for score, text in sorted(LIKERT.items(), reverse=True))
    figure.text(0.5, 0.02, scale, color="white", ha="center", fontsize=7)
    if title:
        figure.suptitle(title, color="white", fontsize=9)
    path = Path(path)
    figure.savefig(path, dpi=100, facecolor="black")
    plt.close(figure)
    return path
