"""Real MR magnitude images used as objects: real anatomy, with its fine edges, texture and own noise.

Label-map phantoms have simpler edges and texture than real anatomy; a network trained on them alone smooths
real cortex, falx and skull. These images are scanned in simulation like the synthetic heads
(``training_data``): training objects and a held-out set that no shipped model has seen.

Training (``TRAINING_IMAGES``): the single-subject 1 mm T1w brain of ``../shared/data/realmr/
voxelmorph_test_scan.npz``, the clinical T1w head of ``pyradiomics_brain1.nrrd`` (both from ../shared) and
nilearn's MNI152 2009a 1 mm T1 template (its wheel). Held out (``HELD_OUT_IMAGES``): ``pyradiomics_brain2.nrrd``
(../shared), matplotlib's ``s1045.ima.gz`` sagittal slice, dipy's ``t1_coronal_slice.npy`` and
``S0_10slices.nii.gz`` (b = 0 EPI) and nibabel's ``example4d.nii.gz`` (EPI). Each image is rescaled to a
99th percentile of 1 and clipped at 0.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from FastMRReconLib.anatomy.head_synthesis import shared_synthseg_dir


def _realmr_dir() -> Path | None:
    synthseg = shared_synthseg_dir()
    folder = None if synthseg is None else synthseg.parent / "realmr"
    return folder if folder is not None and folder.is_dir() else None


def _realmr_file(name: str) -> Path:
    """``name`` in ``../shared/data/realmr``; FileNotFoundError when that folder is absent (``RealImage.shared``
    images are only loaded when ``available``)."""
    folder = _realmr_dir()
    if folder is None:
        raise FileNotFoundError(f"{name}: the shared data folder ../shared/data/realmr is not present")
    return folder / name


def _site_packages() -> Path:
    import nibabel

    return Path(nibabel.__file__).resolve().parents[1]


def _normalised(array: np.ndarray) -> np.ndarray:
    array = np.nan_to_num(np.asarray(array, dtype=np.float64))
    return np.clip(array / np.percentile(array[array > 0], 99), 0, None).astype(np.float32)


def _voxelmorph() -> np.ndarray:
    with np.load(_realmr_file("voxelmorph_test_scan.npz")) as data:
        return data["vol"]


def _nrrd_slices(name: str) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(_realmr_file(name))))  # [k, j, i]: axial slices


def _mni152_t1() -> np.ndarray:
    from nilearn import datasets

    return np.asarray(datasets.load_mni152_template(resolution=1).get_fdata())


def _s1045() -> np.ndarray:
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("s1045.ima.gz", asfileobj=False)
    with gzip.open(path) as stream:
        return np.frombuffer(stream.read(), np.uint16).reshape(1, 256, 256)


def _nifti(relative: str, volume_index: int | None = None) -> np.ndarray:
    import nibabel
    from nibabel.dataobj_images import DataobjImage

    image = nibabel.load(_site_packages() / relative)
    if not isinstance(image, DataobjImage):  # nibabel.load types its result as any file-based image
        raise TypeError(f"{relative} is not an image with voxel data")
    data = np.asanyarray(image.dataobj)
    data = data[..., volume_index] if volume_index is not None else data
    data = data.reshape(data.shape[:3])  # a trailing singleton axis (one volume) is dropped
    return np.moveaxis(data, 2, 0)[:, ::-1].swapaxes(1, 2)  # axial slices [k, rows, columns], anterior up


@dataclass(frozen=True)
class RealImage:
    """A named real image: ``load()`` gives ``[slices, rows, columns]`` (one slice for 2D images);
    ``volumetric`` images may also be cut along the other two axes; ``shared``: needs ../shared."""

    name: str
    load: Callable[[], np.ndarray]
    volumetric: bool
    shared: bool

    def available(self) -> bool:
        return _realmr_dir() is not None if self.shared else True

    def array(self) -> np.ndarray:
        """The image, 3D, rescaled (module docstring)."""
        data = np.asarray(self.load())
        return _normalised(data[None] if data.ndim == 2 else data)


TRAINING_IMAGES = (
    RealImage("voxelmorph T1w", _voxelmorph, True, True),
    RealImage("pyradiomics brain1 T1w", lambda: _nrrd_slices("pyradiomics_brain1.nrrd"), False, True),
    RealImage("MNI152 T1", _mni152_t1, True, False),
)
HELD_OUT_IMAGES = (
    RealImage("pyradiomics brain2 T1w", lambda: _nrrd_slices("pyradiomics_brain2.nrrd"), False, True),
    RealImage("matplotlib s1045", _s1045, False, False),
    RealImage(
        "dipy t1_coronal_slice",
        lambda: np.load(_site_packages() / "dipy/data/files/t1_coronal_slice.npy").T[None, ::-1],
        False,
        False,
    ),
    RealImage("dipy S0_10slices", lambda: _nifti("dipy/data/files/S0_10slices.nii.gz"), False, False),
    RealImage("nibabel example4d", lambda: _nifti("nibabel/tests/data/example4d.nii.gz", 0), False, False),
)


def object_slices(volume: np.ndarray, axis: int, fraction: float = 0.3) -> np.ndarray:
    """Indices along ``axis`` of slices whose object area (pixels above 10% of the 99th percentile) is at
    least ``fraction`` of the largest."""
    area = (volume > 0.1).sum(axis=tuple(a for a in range(3) if a != axis))
    return np.flatnonzero(area >= fraction * area.max())


def draw_slice(
    volume: np.ndarray, volumetric: bool, rng: np.random.Generator, zoom_range: tuple[float, float] = (0.6, 1.4)
) -> tuple[np.ndarray, int]:
    """(a random 2D slice of a rescaled ``volume``, its axis): slice well inside the object, any axis when
    ``volumetric``, zoomed (cubic spline, log-uniform in ``zoom_range``: other pixel sizes), rotated +-10
    degrees, flipped at random, a gamma of 0.7-1.4 on its intensities (other contrast weightings), clipped
    at 0, even-sized."""
    axis = int(rng.integers(3)) if volumetric else 0
    index = int(rng.choice(object_slices(volume, axis)))
    image = np.take(volume, index, axis=axis).astype(np.float64)
    zoom = float(np.exp(rng.uniform(*np.log(zoom_range))))
    image = ndimage.zoom(image, zoom, order=3)
    image = ndimage.rotate(image, rng.uniform(-10, 10), reshape=False, order=3)
    if rng.random() < 0.5:
        image = image[::-1]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    image = np.clip(image, 0, None) ** rng.uniform(0.7, 1.4)
    image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
    return np.ascontiguousarray(image), axis
