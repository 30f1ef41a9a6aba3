"""Voxel grids in patient space: :class:`VolumeGeometry` (IJK-to-RAS), conversions between voxel indices and
RAS points (:func:`ijk_to_ras`, :func:`ras_to_ijk`), and SimpleITK images (which work in LPS).

Arrays follow Slicer's convention: a scalar volume is ``array[k, j, i]`` (slice, row, column). Positions are
in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


GEOMETRY_TOLERANCE_MM = 1e-3



@dataclass(frozen=True)
class VolumeGeometry:
    """Where voxels are in patient space: ``ras = origin + directions @ (spacing * ijk)``.

    ``spacing``: voxel size along i, j, k in mm; ``origin``: RAS position of voxel (0, 0, 0) in mm;
    ``directions``: 3x3, column c is the unit RAS direction of array axis c (i, j, k).
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    directions: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def ijk_to_ras(self) -> np.ndarray:
        """The 4x4 homogeneous IJK-to-RAS matrix."""
        matrix = np.eye(4)
        matrix[:3, :3] = np.asarray(self.directions, float) * np.asarray(self.spacing, float)[None, :]
        matrix[:3, 3] = self.origin
        return matrix

    @classmethod
    def from_ijk_to_ras(cls, matrix: np.ndarray) -> "VolumeGeometry":
        """Split a 4x4 IJK-to-RAS matrix into spacing, origin and unit directions."""
        matrix = np.asarray(matrix, float)
        spacing = np.linalg.norm(matrix[:3, :3], axis=0)
        if np.any(spacing <= 0):
            raise InputError("IJK-to-RAS matrix has a zero-length axis")
        directions = matrix[:3, :3] / spacing[None, :]
        return cls(tuple(spacing.tolist()), tuple(matrix[:3, 3].tolist()),
                   tuple(tuple(row) for row in directions.tolist()))

    def matches(self, other: "VolumeGeometry", tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> bool:
        """True when both map every voxel to the same place (within ``tolerance_mm`` per unit index)."""
        return bool(np.allclose(self.ijk_to_ras(), other.ijk_to_ras(), atol=tolerance_mm))



RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])



def array_to_sitk(array: np.ndarray, geometry: VolumeGeometry) -> "SimpleITK.Image":  # noqa: F821
    """A SimpleITK image of ``array[k, j, i]`` with ``geometry`` (ITK works in LPS; converted here)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(array), isVector=np.asarray(array).ndim == 4)
    image.SetSpacing([float(v) for v in geometry.spacing])
    image.SetOrigin((RAS_TO_LPS @ np.asarray(geometry.origin, float)).tolist())
    image.SetDirection((RAS_TO_LPS @ np.asarray(geometry.directions, float)).ravel().tolist())
    return image



def physical_points_lps(geometry: VolumeGeometry, index: np.ndarray) -> np.ndarray:
    """ITK physical points (LPS, mm) ``[n, 3]`` of voxel indices ``index [n, 3]`` given as (k, j, i) rows,
    e.g. from ``np.argwhere`` on an ``array[k, j, i]``."""
    ijk = np.asarray(index, float)[:, ::-1]
    ras = ijk @ (np.asarray(geometry.directions, float) * np.asarray(geometry.spacing, float)[None, :]).T \
        + np.asarray(geometry.origin, float)
    return ras @ RAS_TO_LPS.T



def sitk_to_array(image: "SimpleITK.Image") -> tuple[np.ndarray, VolumeGeometry]:  # noqa: F821
    """``(array[k, j, i], geometry)`` of a 3D SimpleITK image (a copy)."""
    import SimpleITK as sitk

    directions = RAS_TO_LPS @ np.asarray(image.GetDirection(), float).reshape(3, 3)
    geometry = VolumeGeometry(tuple(float(v) for v in image.GetSpacing()),
                              tuple((RAS_TO_LPS @ np.asarray(image.GetOrigin(), float)).tolist()),
                              tuple(tuple(row) for row in directions.tolist()))
    return sitk.GetArrayFromImage(image), geometry



def orient_axial(array: np.ndarray, geometry: VolumeGeometry) -> tuple[np.ndarray, VolumeGeometry]:
    """Permute and flip axes so that ``k`` runs inferior to superior, ``j`` anterior to posterior and ``i``
    right to left (the DICOM axial LPS order); voxels keep their positions in space."""
    import SimpleITK as sitk

    return sitk_to_array(sitk.DICOMOrient(array_to_sitk(array, geometry), "LPS"))



def crop(array: np.ndarray, geometry: VolumeGeometry, k: slice, j: slice = slice(None),
         i: slice = slice(None)) -> tuple[np.ndarray, VolumeGeometry]:
    """The sub-volume ``array[k, j, i]`` (unit-step slices) with its origin moved so voxels stay in place."""
    cropped = array[k, j, i]
    starts = [s.indices(n)[0] for s, n in zip((i, j, k), array.shape[2::-1])]
    origin = geometry.ijk_to_ras() @ np.array(starts + [1], float)
    return cropped.copy(), VolumeGeometry(geometry.spacing, tuple(origin[:3].tolist()), geometry.directions)
