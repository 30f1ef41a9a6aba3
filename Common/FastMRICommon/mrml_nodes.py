"""MRML volume and table nodes from numpy arrays and back. Every function that makes a result creates a new
node; input nodes are only read. Arrays are ``array[k, j, i]`` (Slicer's convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .geometry import VolumeGeometry


def geometry_of(node: Any) -> VolumeGeometry:
    """The IJK-to-RAS geometry of a volume node."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return VolumeGeometry.from_ijk_to_ras(np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)]))


def set_geometry(node: Any, geometry: VolumeGeometry) -> None:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    ijk_to_ras = geometry.ijk_to_ras_matrix()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, ijk_to_ras[row, column])
    node.SetIJKToRASMatrix(matrix)


def volume_to_array(node: Any) -> tuple[np.ndarray, VolumeGeometry]:
    """A copy of a volume node's voxels (``[k, j, i]``, or ``[k, j, i, component]``) and its geometry."""
    from slicer.util import arrayFromVolume

    if node is None or not node.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"expected a volume node, got {describe_node(node)}")
    if node.GetImageData() is None:
        raise InputError(f"volume {node.GetName()!r} has no image data")
    return np.array(arrayFromVolume(node), copy=True), geometry_of(node)


def new_volume_node(
    scene: Any, array: np.ndarray, geometry: VolumeGeometry, name: str, class_name: str = "vtkMRMLScalarVolumeNode"
) -> Any:
    """Add a new volume node named ``name`` to ``scene`` holding a copy of ``array`` with ``geometry``."""
    array = np.asarray(array)
    if array.ndim != 3 and not (array.ndim == 4 and class_name != "vtkMRMLScalarVolumeNode"):
        raise InputError(f"a {class_name} needs a 3D array [k, j, i]; got shape {array.shape}")
    node = scene.AddNewNodeByClass(class_name, name)
    update_volume_node(node, array, geometry)
    node.CreateDefaultDisplayNodes()
    return node


def new_table_node(scene: Any, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    """Add a new table node named ``name``: one column per title in ``columns`` (text where the first row's
    value is a string, numbers otherwise), one table row per entry of ``rows``."""
    import vtk

    table = vtk.vtkTable()
    for index, title in enumerate(columns):
        text = bool(rows) and isinstance(rows[0][index], str)
        column = vtk.vtkStringArray() if text else vtk.vtkDoubleArray()
        column.SetName(title)
        column.SetNumberOfValues(len(rows))
        for row_index, row in enumerate(rows):
            column.SetValue(row_index, row[index] if text else float(row[index]))
        table.AddColumn(column)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.SetAndObserveTable(table)
    node.SetUseColumnTitleAsColumnHeader(True)
    return node


def update_volume_node(node: Any, array: np.ndarray, geometry: VolumeGeometry) -> None:
    """Replace the voxels and geometry of an existing (output) volume node with a copy of ``array``."""
    from slicer.util import updateVolumeFromArray

    updateVolumeFromArray(node, np.ascontiguousarray(array))
    set_geometry(node, geometry)


def describe_node(node: Any) -> str:
    if node is None:
        return "nothing (None)"
    if hasattr(node, "GetClassName"):
        name = node.GetName() if hasattr(node, "GetName") else ""
        return f"{node.GetClassName()} {name!r}"
    return type(node).__name__
