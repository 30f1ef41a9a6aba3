"""Raw k-space files to volumes: what ``fastmrrecon reconstruct-kspace`` and the module's *Raw k-space* input do.

The image of every slice (``model.kspace_reconstructor``) becomes ``array[k, j, i]`` = ``[slice, ky, kx]``. Raw
k-space files carry no patient geometry here, so the volume is on a unit grid (1 mm voxels at the origin, identity
directions: ``KSPACE_GEOMETRY``); the image's orientation is that of the k-space axes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.mrml_nodes import new_volume_node
from FastMRICommon.volume_files import atomic_write, file_stem, file_suffix
from FastMRReconLib.kspace.raw_kspace import read_raw_kspace

#: The grid of a volume reconstructed from raw k-space (module docstring).
KSPACE_GEOMETRY = VolumeGeometry()
#: Suffixes ``--complex`` can write (NIfTI holds complex64 voxels).
COMPLEX_SUFFIXES = (".nii", ".nii.gz")


def reconstruct_kspace_file(
    path: str | os.PathLike,
    reconstructor: Any,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    complex_output: bool = False,
) -> np.ndarray:
    """The images ``[slices, ky, kx]`` (float32 magnitude, or complex64) of the raw k-space in ``path`` by
    ``reconstructor`` (a ``KspaceReconstructor``)."""
    raw = read_raw_kspace(path)
    return reconstructor.reconstruct(
        raw.kspace, raw.mask, progress=progress, cancel=cancel, complex_output=complex_output
    )


def write_complex_volume(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write complex ``array[k, j, i]`` on ``KSPACE_GEOMETRY`` as a complex64 NIfTI file, atomically."""
    import SimpleITK as sitk

    path = Path(path)
    if file_suffix(path) not in COMPLEX_SUFFIXES:
        raise InputError(f"a complex image is written as NIfTI ({', '.join(COMPLEX_SUFFIXES)}), not {path.name}")
    image = sitk.GetImageFromArray(np.asarray(array, np.complex64))
    with atomic_write(path) as temporary:
        sitk.WriteImage(image, str(temporary))
    return path


def reconstruct_kspace_node(
    scene: Any,
    path: str | os.PathLike,
    reconstructor: Any,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> Any:
    """A new scalar volume node of ``scene`` holding the magnitude images of the raw k-space file ``path``, named
    after the file."""
    array = reconstruct_kspace_file(path, reconstructor, progress, cancel)
    return new_volume_node(scene, array, KSPACE_GEOMETRY, f"{file_stem(Path(path))}_kspace_network")
