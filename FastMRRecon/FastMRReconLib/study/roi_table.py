"""ROI SNR / CNR of several volumes from three points placed with Slicer's markups (what the module's
*ROI SNR/CNR* section calls).

The three control points of a point-list markups node are, in order, ROI 1, ROI 2 and the background. Each
point, in world (RAS) coordinates, is mapped into each volume's voxel grid (through the volume's own
transform, if any) and defines a ``size`` x ``size`` in-plane ROI on the slice (``k``) it lies on
(``metrics.roi_pixels``). Per volume: mean and SD of each ROI, SNR of ROI 1 and ROI 2 (mean / SD of the
background ROI) and CNR ((mean 1 - mean 2) / SD of the background ROI), plus the change in % of SNR 1,
SNR 2 and CNR against a reference volume. Results go to a new table node and, on request, to CSV.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from FastMRICommon.errors import InputError
from FastMRICommon.geometry import ijk_to_ras
from FastMRICommon.mrml_nodes import new_table_node
from FastMRReconLib.metrics import RoiSettings, RoiStats, roi_statistics
from FastMRReconLib.volume_logic import scalar_volume_array

ROI_NAMES = ("ROI 1", "ROI 2", "background")
TABLE_COLUMNS = (
    "volume",
    "ROI 1 mean",
    "ROI 1 SD",
    "ROI 2 mean",
    "ROI 2 SD",
    "background mean",
    "background SD",
    "SNR ROI 1",
    "SNR ROI 2",
    "CNR",
    "SNR ROI 1 change %",
    "SNR ROI 2 change %",
    "CNR change %",
)


@dataclass(frozen=True)
class RoiRow:
    """One volume's ROI statistics and its % change against the reference (NaN where the reference is 0)."""

    volume: str
    stats: RoiStats
    snr1_change: float
    snr2_change: float
    cnr_change: float

    def values(self) -> tuple:
        s = self.stats
        return (
            self.volume,
            s.mean1,
            s.sd1,
            s.mean2,
            s.sd2,
            s.mean_background,
            s.sd_background,
            s.snr1,
            s.snr2,
            s.cnr,
            self.snr1_change,
            self.snr2_change,
            self.cnr_change,
        )


def world_to_ijk(volume_node: Any, point_ras: Sequence[float]) -> np.ndarray:
    """Continuous voxel index (i, j, k) of a world RAS point in ``volume_node`` (through its transform)."""
    import slicer
    import vtk

    point = [float(v) for v in point_ras]
    parent = volume_node.GetParentTransformNode()
    if parent is not None:
        to_volume = vtk.vtkGeneralTransform()
        slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(None, parent, to_volume)
        point = list(to_volume.TransformPoint(point))
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(matrix)
    return np.array(matrix.MultiplyPoint(point + [1.0])[:3])


Voxel = tuple[int, int, int]


def _voxel(point_ijk: np.ndarray) -> Voxel:
    i, j, k = (int(v) for v in np.rint(point_ijk))
    return i, j, k


def roi_points(markups: Any, volume_node: Any) -> tuple[Voxel, Voxel, Voxel]:
    """The voxel (i, j, k) of each of the three points (ROI 1, ROI 2, background) in ``volume_node``."""
    if markups is None or not markups.IsA("vtkMRMLMarkupsNode"):
        raise InputError("select the point list holding the three ROI points")
    count = markups.GetNumberOfControlPoints()
    if count != len(ROI_NAMES):
        raise InputError(
            f"place exactly three points (ROI 1, ROI 2, background) in {markups.GetName()!r}; it has {count}"
        )
    points = []
    for index in range(count):
        position = [0.0, 0.0, 0.0]
        markups.GetNthControlPointPositionWorld(index, position)
        points.append(_voxel(world_to_ijk(volume_node, position)))
    roi1, roi2, background = points
    return roi1, roi2, background


def _change(value: float, reference: float) -> float:
    return float(100.0 * (value - reference) / abs(reference)) if reference != 0 else float("nan")


def compare_volumes(
    volumes: Sequence[Any], markups: Any, reference: Any | None = None, size: int = RoiSettings.roi_size
) -> list[RoiRow]:
    """ROI statistics of each volume node (module docstring); ``reference`` (default: the first volume) must
    be one of ``volumes``. Any volume whose ROIs cannot be measured stops the whole comparison with a
    one-line error naming it (nothing is half-written)."""
    volumes = [node for node in volumes if node is not None]
    if not volumes:
        raise InputError("select at least one volume to measure")
    reference = volumes[0] if reference is None else reference
    if reference not in volumes:
        raise InputError(f"the reference volume {reference.GetName()!r} must be one of the compared volumes")
    measured = []
    for node in volumes:
        array, _ = scalar_volume_array(node)
        try:
            roi1, roi2, background = roi_points(markups, node)
            measured.append((node, roi_statistics(array, roi1, roi2, background, size=size)))
        except InputError as error:
            raise InputError(f"{node.GetName()!r}: {error}") from None
    base = dict(measured)[reference]
    return [
        RoiRow(
            node.GetName(),
            stats,
            _change(stats.snr1, base.snr1),
            _change(stats.snr2, base.snr2),
            _change(stats.cnr, base.cnr),
        )
        for node, stats in measured
    ]


def homogeneous_roi_points(truth: np.ndarray, size: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Suggested (i, j, k) of ROI 1 and ROI 2 on the middle slice of ``truth`` (a noise-free or fully sampled
    volume): the most uniform ``size`` x ``size`` window among the brightest quarter of tissue windows, and
    among the second-darkest quarter (darker tissue). ``scipy``'s ``size`` window at a pixel covers the same
    pixels as ``metrics.roi_pixels`` there."""
    k = truth.shape[0] // 2
    image = truth[k].astype(float)
    mean = ndimage.uniform_filter(image, size)
    sd = np.sqrt(np.maximum(ndimage.uniform_filter(image**2, size) - mean**2, 0))
    tissue = ndimage.binary_erosion(image > 0.05 * image.max(), np.ones((size + 2, size + 2)))
    quartiles = np.percentile(mean[tissue], [25, 50, 75])
    points = []
    for low, high in ((quartiles[2], np.inf), (quartiles[0], quartiles[1])):
        candidates = tissue & (mean >= low) & (mean < high)
        j, i = np.unravel_index(np.argmin(np.where(candidates, sd, np.inf)), image.shape)
        points.append((int(i), int(j), k))
    return points[0], points[1]


def noisy_air_point(truth: np.ndarray, volumes: list[np.ndarray], size: int) -> tuple[int, int, int]:
    """Suggested (i, j, k) of the background ROI on the middle slice: air (``truth`` zero) where every
    volume has noise (SD > 0), nearest to the object (SENSE images are zero farther out)."""
    k = truth.shape[0] // 2
    air = ndimage.binary_erosion(truth[k] == 0, np.ones((size + 2, size + 2)))
    noisy = np.ones_like(air)
    for volume in volumes:
        image = volume[k].astype(float)
        mean = ndimage.uniform_filter(image, size)
        noisy &= ndimage.uniform_filter(image**2, size) - mean**2 > 1e-6 * max(image.max(), 1e-12) ** 2
    candidates = air & noisy
    if not candidates.any():
        raise InputError("no air region with noise in every volume for the background ROI")
    distance = ndimage.distance_transform_edt(truth[k] == 0)
    j, i = np.unravel_index(np.argmin(np.where(candidates, distance, np.inf)), air.shape)
    return int(i), int(j), k


def suggested_roi_points(
    scene: Any,
    reference: Any,
    volumes: Sequence[Any],
    size: int = RoiSettings.roi_size,
    truth: np.ndarray | None = None,
    name: str = "ROI points",
) -> Any:
    """A new point list in ``scene`` with ROI 1, ROI 2 and the background (labelled ``ROI_NAMES``) on the
    middle slice of ``reference`` (a volume node): :func:`homogeneous_roi_points` of ``truth`` and
    :func:`noisy_air_point` of ``truth`` and ``volumes`` (volume nodes on the reference's grid), at their RAS
    positions (mm; the list is put under the reference's parent transform, so the points follow it). ``truth``
    (``[k, j, i]`` on that grid) defaults to the reference's voxels with everything below 2% of its maximum set
    to 0 (air)."""
    reference_array, geometry = scalar_volume_array(reference)
    if truth is None:
        truth = np.where(reference_array > 0.02 * reference_array.max(), reference_array, 0.0)
    arrays = [scalar_volume_array(node)[0] for node in volumes]
    points = [*homogeneous_roi_points(truth, size), noisy_air_point(truth, arrays, size)]
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    markups.SetAndObserveTransformNodeID(reference.GetTransformNodeID())
    for label, position in zip(ROI_NAMES, ijk_to_ras(geometry, np.array(points, float))):
        markups.AddControlPoint(*position, label)
    return markups


def roi_table_node(scene: Any, rows: Sequence[RoiRow], name: str = "ROI SNR CNR") -> Any:
    """A new table node in ``scene`` with one row per volume (columns ``TABLE_COLUMNS``)."""
    return new_table_node(scene, name, TABLE_COLUMNS, [row.values() for row in rows])


def write_table_csv(table_node: Any, path: str | os.PathLike) -> Path:
    """Write a table node to CSV through its storage node, whole or not at all (written beside, then moved),
    with Slicer's column-type file ``<name>.schema.csv`` beside it."""
    import slicer

    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise InputError(f"the table file must end in .csv, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.csv")
    storage = slicer.vtkMRMLTableStorageNode()
    storage.SetFileName(str(partial))
    if not storage.WriteData(table_node):
        partial.unlink(missing_ok=True)
        raise OSError(f"writing {path} failed")
    schema = partial.with_name(partial.stem + ".schema.csv")
    if schema.is_file():
        schema.replace(path.with_name(path.stem + ".schema.csv"))
    partial.replace(path)
    return path
