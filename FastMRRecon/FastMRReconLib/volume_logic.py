"""FastMRRecon operations on MRML volume nodes (what the Slicer module's logic calls).

Every function reads its input node and returns a new node in the input's scene, with the input's geometry;
the input is never modified.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback
from FastMRICommon.mrml_nodes import new_volume_node, update_volume_node, volume_to_array
from FastMRReconLib.kspace.simulate import AcquisitionConfig, SimulationSettings, simulate_volume
from FastMRReconLib.model.settings import STRENGTHS, check_noise_settings

if TYPE_CHECKING:  # torch is imported only when a network is used (Slicer installs it on request)
    from FastMRReconLib.model.reconstructor import Reconstructor


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


def simulate_volume_node(
    node: Any,
    config: AcquisitionConfig,
    name: str | None = None,
    combine: str = SimulationSettings.combine,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> Any:
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


#: Node reference from a reconstruction's output volume to its change map.
CHANGE_MAP_REFERENCE = "changeMap"
#: Colour table of change maps (one of Slicer's default tables, vtkSlicerColorLogic::AddDefaultTableNodes).
CHANGE_MAP_COLORS = "vtkMRMLColorTableNodeRainbow"
#: Display range of change maps, in noise SDs; voxels below ``CHANGE_MAP_SHOWN_FROM`` are transparent.
CHANGE_MAP_RANGE = (0.0, 4.0)
CHANGE_MAP_SHOWN_FROM = 1.0
#: Opacity of a change map shown over its reconstruction in the slice views.
CHANGE_MAP_OPACITY = 0.4


def noise_arguments(strength: str, noise_sd: float | None = None) -> tuple[float | None, float]:
    """``(noise_sd, strength factor)`` for :func:`reconstruct_volume_node` from a strength name (of
    ``model.settings.STRENGTHS``) and a noise SD (image units; None: measured), checked before anything runs:
    one-line InputError for an unknown name or a noise SD that is not a positive number. Does not import
    torch."""
    if strength not in STRENGTHS:
        raise InputError(f"the strength must be one of {', '.join(STRENGTHS)}, got {strength!r}")
    noise_sd = None if noise_sd is None else float(noise_sd)
    check_noise_settings(noise_sd, STRENGTHS[strength])
    return noise_sd, STRENGTHS[strength]


class ReconstructorCache:
    """Networks loaded once each: :meth:`get` returns the ``Reconstructor`` (``kspace``: the
    ``KspaceReconstructor``) of a model file (None: the shipped model) on a device ("auto", "cpu", "cuda"),
    loading it the first time (torch is imported then)."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str | None, str, bool], Any] = {}

    def get(self, path: str | None = None, device: str = "auto", kspace: bool = False) -> Any:
        from FastMRReconLib.model.kspace_reconstructor import KspaceReconstructor
        from FastMRReconLib.model.reconstructor import Reconstructor

        key = (None if path is None else str(path), device, kspace)
        if key not in self._loaded:
            self._loaded[key] = (KspaceReconstructor if kspace else Reconstructor).load(path, device=device)
        return self._loaded[key]


def reconstruct_volume_node(
    node: Any,
    reconstructor: Reconstructor,
    name: str | None = None,
    output: Any | None = None,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    noise_sd: float | None = None,
    strength: float = 1.0,
    change_map: bool = False,
) -> Any:
    """``reconstructor``'s output for ``node`` (slice by slice along ``k``, batches of ``batch_size`` slices,
    None: ``reconstructor.default_batch_size``; progress and cancellation between batches, so the GUI stays
    responsive) in ``output`` when given (its voxels and geometry are
    replaced; it must not be the input), else in a new volume named ``"<input> DNN"`` unless ``name`` is
    given. ``noise_sd`` (None: measured) and ``strength`` as in ``Reconstructor.reconstruct``. With
    ``change_map``, a new volume ``"<output> change [noise SD]"`` holds |output - input| / noise SD, displayed
    with a colour table over ``CHANGE_MAP_RANGE``; the output references it as ``CHANGE_MAP_REFERENCE``.
    Cancelling leaves the scene as it was."""
    if output is not None and output is node:
        raise InputError("the output volume must differ from the input volume (the input is never overwritten)")
    if output is not None and (not output.IsA("vtkMRMLScalarVolumeNode") or output.IsA("vtkMRMLLabelMapVolumeNode")):
        raise InputError(f"the output {output.GetName()!r} must be a scalar volume")
    array, geometry = scalar_volume_array(node)
    reconstructed = reconstructor.reconstruct(
        array,
        batch_size=batch_size,
        progress=progress,
        cancel=cancel,
        noise_sd=noise_sd,
        strength=strength,
        return_change=change_map,
    )
    # a tuple (image, change map) exactly when change_map
    result, change = reconstructed if isinstance(reconstructed, tuple) else (reconstructed, None)
    if output is None:
        output = _output_node(node, result, geometry, name or f"{node.GetName()} DNN")
    else:
        update_volume_node(output, result, geometry)
        _window(output, result)
    if change is not None:
        change_node = new_volume_node(
            node.GetScene(), change.astype(np.float32), geometry, f"{output.GetName()} change [noise SD]"
        )
        display = change_node.GetDisplayNode()
        if display is not None:
            display.SetAndObserveColorNodeID(CHANGE_MAP_COLORS)
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(*CHANGE_MAP_RANGE)
            display.AutoThresholdOff()  # voxels changed by less than the noise are left transparent
            display.SetThreshold(CHANGE_MAP_SHOWN_FROM, max(float(change.max()), CHANGE_MAP_SHOWN_FROM))
            display.ApplyThresholdOn()
        output.SetNodeReferenceID(CHANGE_MAP_REFERENCE, change_node.GetID())
    else:  # an earlier run's change map no longer describes this output
        output.RemoveNodeReferenceIDs(CHANGE_MAP_REFERENCE)
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
