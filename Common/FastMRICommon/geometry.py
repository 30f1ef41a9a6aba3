"""Voxel grids in patient space: :class:`VolumeGeometry` (IJK-to-RAS), conversions between voxel indices and
RAS points (:func:`ijk_to_ras`, :func:`ras_to_ijk`), and SimpleITK images (which work in LPS).

Arrays follow Slicer's convention: a scalar volume is ``array[k, j, i]`` (slice, row, column). Positions are
in mm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError

if TYPE_CHECKING:  # SimpleITK is imported lazily at run time
    import SimpleITK

GEOMETRY_TOLERANCE_MM = 1e-3


def vector3(values: Iterable[float]) -> tuple[float, float, float]:
    """``values`` (e.g. a spacing, an origin, a NumPy array) as a tuple of exactly three floats."""
    items = [float(v) for v in values]
    if len(items) != 3:
        raise InputError(f"expected 3 values (i, j, k), got {len(items)}")
    return items[0], items[1], items[2]


@dataclass(frozen=True)
class VolumeGeometry:
    """Where voxels are in patient space: ``ras = origin + directions @ (spacing * ijk)``.

    ``spacing``: voxel size along i, j, k in mm; ``origin``: RAS position of voxel (0, 0, 0) in mm;
    ``directions``: 3x3, column c is the unit RAS direction of array axis c (i, j, k).
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    directions: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def ijk_to_ras_matrix(self) -> np.ndarray:
        """The 4x4 homogeneous IJK-to-RAS matrix."""
        matrix = np.eye(4)
        matrix[:3, :3] = np.asarray(self.directions, float) * np.asarray(self.spacing, float)[None, :]
        matrix[:3, 3] = self.origin
        return matrix

    @classmethod
    def from_ijk_to_ras(cls, matrix: np.ndarray) -> VolumeGeometry:
        """Split a 4x4 IJK-to-RAS matrix into spacing, origin and unit directions."""
        matrix = np.asarray(matrix, float)
        spacing = np.linalg.norm(matrix[:3, :3], axis=0)
        if np.any(spacing <= 0):
            raise InputError("IJK-to-RAS matrix has a zero-length axis")
        directions = matrix[:3, :3] / spacing[None, :]
        return cls(
            tuple(spacing.tolist()), tuple(matrix[:3, 3].tolist()), tuple(tuple(row) for row in directions.tolist())
        )

    def matches(self, other: VolumeGeometry, tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> bool:
        """True when both map every voxel to the same place (within ``tolerance_mm`` per unit index)."""
        return bool(np.allclose(self.ijk_to_ras_matrix(), other.ijk_to_ras_matrix(), atol=tolerance_mm))


RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def array_to_sitk(array: np.ndarray, geometry: VolumeGeometry) -> SimpleITK.Image:
    """A SimpleITK image of ``array[k, j, i]`` with ``geometry`` (ITK works in LPS; converted here)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(array), isVector=np.asarray(array).ndim == 4)
    image.SetSpacing([float(v) for v in geometry.spacing])
    image.SetOrigin((RAS_TO_LPS @ np.asarray(geometry.origin, float)).tolist())
    image.SetDirection((RAS_TO_LPS @ np.asarray(geometry.directions, float)).ravel().tolist())
    return image


def ijk_to_ras(geometry: VolumeGeometry, points: np.ndarray | Sequence[float]) -> np.ndarray:
    """RAS positions (mm) of continuous voxel indices ``points``, shape ``(3,)`` or ``(n, 3)`` with columns
    (i, j, k) = (column, row, slice): not the (k, j, i) order of array indexing and ``np.argwhere`` (reverse
    those with ``[..., ::-1]``). Returns float64 of the same shape."""
    matrix = geometry.ijk_to_ras_matrix()
    return np.asarray(points, float) @ matrix[:3, :3].T + matrix[:3, 3]


def ras_to_ijk(geometry: VolumeGeometry, points: np.ndarray | Sequence[float]) -> np.ndarray:
    """Continuous (i, j, k) indices of RAS points (mm) on ``geometry``'s grid, shape ``(3,)`` or ``(n, 3)`` ->
    the same shape, float64, not rounded (the voxel is ``np.rint(...).astype(int)``). Points are in the
    volume's own frame: a world point of a transformed volume is first mapped through the inverse transform."""
    matrix = geometry.ijk_to_ras_matrix()
    return np.linalg.solve(matrix[:3, :3], (np.asarray(points, float) - matrix[:3, 3]).T).T


def physical_points_lps(geometry: VolumeGeometry, index: np.ndarray) -> np.ndarray:
    """ITK physical points (LPS, mm) ``[n, 3]`` of voxel indices ``index [n, 3]`` given as (k, j, i) rows,
    e.g. from ``np.argwhere`` on an ``array[k, j, i]``."""
    return ijk_to_ras(geometry, np.asarray(index, float)[:, ::-1]) @ RAS_TO_LPS.T


def sitk_to_array(image: SimpleITK.Image) -> tuple[np.ndarray, VolumeGeometry]:
    """``(array[k, j, i], geometry)`` of a 3D SimpleITK image (a copy)."""
    import SimpleITK as sitk

    directions = RAS_TO_LPS @ np.asarray(image.GetDirection(), float).reshape(3, 3)
    geometry = VolumeGeometry(
        vector3(image.GetSpacing()),
        vector3(RAS_TO_LPS @ np.asarray(image.GetOrigin(), float)),
        tuple(tuple(row) for row in directions.tolist()),
    )
    return sitk.GetArrayFromImage(image), geometry


def orient_axial(array: np.ndarray, geometry: VolumeGeometry) -> tuple[np.ndarray, VolumeGeometry]:
    """Permute and flip axes so that ``k`` runs inferior to superior, ``j`` anterior to posterior and ``i``
    right to left (the DICOM axial LPS order); voxels keep their positions in space."""
    import SimpleITK as sitk

    return sitk_to_array(sitk.DICOMOrient(array_to_sitk(array, geometry), "LPS"))


def crop(
    array: np.ndarray, geometry: VolumeGeometry, k: slice, j: slice = slice(None), i: slice = slice(None)
) -> tuple[np.ndarray, VolumeGeometry]:
    """The sub-volume ``array[k, j, i]`` (unit-step slices) with its origin moved so voxels stay in place."""
    cropped = array[k, j, i]
    starts = [s.indices(n)[0] for s, n in zip((i, j, k), array.shape[2::-1])]
    origin = ijk_to_ras(geometry, starts)
    return cropped.copy(), VolumeGeometry(geometry.spacing, tuple(origin.tolist()), geometry.directions)
