"""A moving placenta phantom for testing and benchmarking motion correction, and how to score a correction.

Each volume moves the object by its own random affine transform (rotation about random axes, translation,
scale and shear) before it is acquired: the object is moved on thin slices, each acquired thick slice
averages them, then Rician noise is added, as in an acquisition. ``residual_displacements`` measures what a
correction left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from FastMRICommon.geometry import VolumeGeometry, array_to_sitk, physical_points_lps
from IVIMEstimatorLib.diffusion_series import DiffusionSeries
from IVIMEstimatorLib.motion import transform_points
from IVIMEstimatorLib.phantoms.phantom import PlacentaPhantom, placenta_phantom
from IVIMEstimatorLib.signal_model import ACQUIRED_BVALUES, add_rician_noise, ivim_signal


@dataclass(frozen=True)
class MotionRange:
    """Largest translation (mm, per axis), rotation (degrees) and scale/shear deviation (fraction)."""

    translation_mm: float = 5.0
    rotation_deg: float = 5.0
    scale_shear: float = 0.03


@dataclass
class MovingPhantom:
    """The moved noisy series, the truth (motion-free ``phantom``), and each volume's motion transform
    (ITK convention: moved volume(x) = motion-free volume(motion[v](x)))."""

    series: DiffusionSeries
    phantom: PlacentaPhantom
    motion: list


def random_affine(rng: np.random.Generator, motion: MotionRange, centre: np.ndarray):
    """A SimpleITK affine transform about ``centre`` (LPS mm) drawn uniformly within ``motion``."""
    import SimpleITK as sitk

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(-motion.rotation_deg, motion.rotation_deg))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross  # Rodrigues
    deformation = np.eye(3) + rng.uniform(-motion.scale_shear, motion.scale_shear, (3, 3))
    transform = sitk.AffineTransform(3)
    transform.SetCenter(centre.tolist())
    transform.SetMatrix((rotation @ deformation).ravel().tolist())
    transform.SetTranslation(rng.uniform(-motion.translation_mm, motion.translation_mm, 3).tolist())
    return transform


def _thin_slice_runs(fine: np.ndarray, oversampling: int, margin: int) -> np.ndarray:
    """A finely sampled stack ``[fine k, ...]`` without ``margin`` thick slices each side, grouped as
    ``[thick k, oversampling, ...]``: the thin slices of each thick slice."""
    inner = fine[margin * oversampling : fine.shape[0] - margin * oversampling]
    return inner.reshape(inner.shape[0] // oversampling, oversampling, *inner.shape[1:])


def _slice_profile(fine: np.ndarray, oversampling: int, margin: int) -> np.ndarray:
    """Thick slices: the average of each one's thin slices (a rectangular slice profile)."""
    return _thin_slice_runs(fine, oversampling, margin).mean(axis=1)


def _majority_labels(fine: np.ndarray, oversampling: int, margin: int) -> np.ndarray:
    """Each thick slice's voxel takes the label most of its thin slices have."""
    runs = _thin_slice_runs(fine, oversampling, margin)
    counts = np.stack([(runs == label).sum(axis=1) for label in range(int(fine.max()) + 1)])
    return counts.argmax(axis=0).astype(np.uint8)


def moving_placenta_phantom(
    motion: MotionRange = MotionRange(),
    bvalues: np.ndarray = ACQUIRED_BVALUES,
    snr: float = 30.0,
    seed: int = 0,
    moved: bool = True,
    shape: tuple[int, int, int] = (15, 128, 128),
    spacing_mm: tuple[float, float, float] = (1.25, 1.25, 4.0),
    slice_oversampling: int = 4,
) -> MovingPhantom:
    """The placenta phantom acquired as ``shape`` (slices, rows, columns; default 128 x 128 x 15 voxels of
    1.25 x 1.25 x 4 mm) with every volume moved (``moved=False``: the same noise draw without motion, the
    motion-free control).

    Motion happens to the object, not to the acquired voxels: the phantom is built on thin slices
    (slice thickness / ``slice_oversampling``) over a slab three thick slices wider on each side (so tissue
    moves into the field of view as it would in a patient), moved there, and each acquired slice averages
    its thin slices (a rectangular slice profile), then Rician noise is added. The truth maps (``phantom``)
    are the slice-averaged maps on the acquired grid, its labels the majority label of each voxel.
    """
    import SimpleITK as sitk

    slices, rows, columns = shape
    margin = 3
    fine_spacing = (spacing_mm[0], spacing_mm[1], spacing_mm[2] / slice_oversampling)
    fine_shape = ((slices + 2 * margin) * slice_oversampling, rows, columns)
    fine = placenta_phantom(shape=fine_shape, spacing_mm=fine_spacing, bvalues=bvalues[:1], snr=snr, seed=seed)
    geometry = VolumeGeometry(
        spacing=(float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2])),
        origin=(-(columns - 1) / 2 * spacing_mm[0], -(rows - 1) / 2 * spacing_mm[1], -(slices - 1) / 2 * spacing_mm[2]),
    )
    reference = array_to_sitk(np.zeros(fine_shape, np.float32), fine.series.geometry)
    centre = np.array(
        reference.TransformContinuousIndexToPhysicalPoint([(size - 1) / 2 for size in reference.GetSize()])
    )
    rng = np.random.default_rng(seed + 1)
    transforms, volumes = [], []
    for b in bvalues:
        transform = random_affine(rng, motion, centre) if moved else sitk.AffineTransform(3)
        clean = ivim_signal(np.array([b]), fine.f, fine.D, fine.Dstar, fine.S0)[..., 0].astype(np.float32)
        image = array_to_sitk(clean, fine.series.geometry)
        thin = sitk.GetArrayFromImage(sitk.Resample(image, reference, transform, sitk.sitkLinear, 0.0))
        volumes.append(_slice_profile(thin, slice_oversampling, margin))
        transforms.append(transform)
    noisy = add_rician_noise(np.stack(volumes), fine.sigma, np.random.default_rng(seed + 2)).astype(np.float32)
    series = DiffusionSeries(noisy, np.asarray(bvalues, float), geometry)

    def acquired(fine_map: np.ndarray) -> np.ndarray:
        return _slice_profile(fine_map, slice_oversampling, margin).astype(np.float32)

    truth = PlacentaPhantom(
        series,
        f=acquired(fine.f),
        D=acquired(fine.D),
        Dstar=acquired(fine.Dstar),
        S0=acquired(fine.S0),
        labels=_majority_labels(fine.labels, slice_oversampling, margin),
        sigma=fine.sigma,
    )
    return MovingPhantom(series, truth, transforms)


def residual_displacements(moving: MovingPhantom, corrections: list, region: np.ndarray) -> dict[str, float]:
    """How far the corrected volumes still are from each other and from the truth, in mm, over the voxels of
    ``region`` (e.g. the placenta): a voxel x of corrected volume v shows the motion-free point
    motion[v](correction[v](x)). ``inter_volume``: distance to the mean of that point over volumes (the
    misalignment that matters for fitting: a common shift of all volumes is not observable);
    ``absolute``: distance to x itself. ``before`` values use no correction."""
    points = physical_points_lps(moving.series.geometry, np.argwhere(region))

    def mapped(correction_list):
        return np.stack(
            [
                transform_points(motion, transform_points(correction, points))
                for motion, correction in zip(moving.motion, correction_list)
            ]
        )  # [volumes, points, 3]

    result = {}
    for label, correction_list in (("before", [None] * len(moving.motion)), ("after", corrections)):
        positions = mapped(correction_list)
        inter = np.linalg.norm(positions - positions.mean(axis=0, keepdims=True), axis=2)
        absolute = np.linalg.norm(positions - points[None], axis=2)
        result[f"{label}_inter_volume_mean_mm"] = float(inter.mean())
        result[f"{label}_inter_volume_max_mm"] = float(inter.max())
        result[f"{label}_absolute_mean_mm"] = float(absolute.mean())
        result[f"{label}_absolute_max_mm"] = float(absolute.max())
    return result
