"""FastMRRecon operations on MRML volume nodes (what the Slicer module's logic calls).

Every function reads its input node and returns a new node in the input's scene, with the input's geometry;
the input is never modified.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback
from FastMRICommon.mrml_bridge import new_volume_node, volume_to_array

from .simulate import AcquisitionConfig, simulate_volume


def scalar_volume_array(node: Any) -> tuple[np.ndarray, Any]:
    """Voxels (float64 ``[k, j, i]``) and geometry of a scalar, non-label volume; clear errors otherwise."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError("select a scalar volume")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"{node.GetName()!r} is a label map, not an image")
    array, geometry = volume_to_array(node)
    if array.ndim != 3:
        raise InputError(f"{node.GetName()!r} has {array.shape[-1]} components per voxel; select a scalar image")
    return array.astype(np.float64), geometry


def simulate_volume_node(node: Any, config: AcquisitionConfig, name: Optional[str] = None,
                         progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> Any:
    """A new volume holding the simulated accelerated scan of ``node`` (see :func:`simulate_volume`),
    named ``"<input> R<R> AV<averages>"`` unless ``name`` is given."""
    array, geometry = scalar_volume_array(node)
    result = simulate_volume(array, config, progress=progress, cancel=cancel)
    name = name or f"{node.GetName()} R{config.acceleration:g} AV{config.averages}"
    output = new_volume_node(node.GetScene(), result, geometry, name)
    display = output.GetDisplayNode()
    if display is not None:
        low, high = np.percentile(result, [1, 99.5])
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(float(low), float(high))
    return output
