"""FastMRRecon operations on MRML volume nodes (what the Slicer module's logic calls).

Every function reads its input node and returns a new node in the input's scene, with the input's geometry;
the input is never modified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback
from FastMRICommon.mrml_bridge import new_volume_node, update_volume_node, volume_to_array

from .simulate import AcquisitionConfig, simulate_volume

if TYPE_CHECKING:  # torch is imported only when a network is used (Slicer installs it on request)
    from .reconstructor import Reconstructor


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


def simulate_volume_node(node: Any, config: AcquisitionConfig, name: Optional[str] = None, combine: str = "sense",
                         progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> Any:
    """A new volume holding the simulated accelerated scan of ``node`` combined by ``combine`` (see
    :func:`simulate_volume`), named ``"<input> R<R> AV<averages>"`` (plus ``" k<rows>x<columns>"``, the
    acquired k-space fractions, when not all of k-space is acquired) unless ``name`` is given."""
    array, geometry = scalar_volume_array(node)
    result = simulate_volume(array, config, combine=combine, progress=progress, cancel=cancel)
    if name is None:
        name = f"{node.GetName()} R{config.acceleration:g} AV{config.averages}"
        if config.resolution != (1.0, 1.0):
            name += " k{:g}x{:g}".format(*config.resolution)
    return _output_node(node, result, geometry, name)


def reconstruct_volume_node(node: Any, reconstructor: "Reconstructor", name: Optional[str] = None,
                            output: Optional[Any] = None, batch_size: Optional[int] = None,
                            progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> Any:
    """``reconstructor``'s output for ``node`` (slice by slice along ``k``, batches of ``batch_size`` slices,
    None: ``reconstructor.default_batch_size``, at most about 0.15 s of work on the CPU; progress and cancellation between batches) in ``output`` when given (its voxels and geometry are
    replaced; it must not be the input), else in a new volume named ``"<input> DNN"`` unless ``name`` is
    given. Cancelling leaves the scene as it was."""
    if output is not None and output is node:
        raise InputError("the output volume must differ from the input volume (the input is never overwritten)")
    if output is not None and (not output.IsA("vtkMRMLScalarVolumeNode") or output.IsA("vtkMRMLLabelMapVolumeNode")):
        raise InputError(f"the output {output.GetName()!r} must be a scalar volume")
    array, geometry = scalar_volume_array(node)
    result = reconstructor.reconstruct(array, batch_size=batch_size, progress=progress, cancel=cancel)
    if output is None:
        return _output_node(node, result, geometry, name or f"{node.GetName()} DNN")
    update_volume_node(output, result, geometry)
    _window(output, result)
    return output


def _output_node(source: Any, result: np.ndarray, geometry: Any, name: str) -> Any:
    """A new volume in ``source``'s scene holding ``result``, windowed by :func:`_window`."""
    output = new_volume_node(source.GetScene(), result, geometry, name)
    _window(output, result)
    return output


def _window(node: Any, result: np.ndarray) -> None:
    """Window/level from the 1st to the 99.5th percentile of ``result``."""
    display = node.GetDisplayNode()
    if display is not None:
        low, high = np.percentile(result, [1, 99.5])
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(float(low), float(high))
