"""Motion correction of a diffusion series: iterative rigid + affine registration to a mean template.

Maternal breathing and fetal motion move the placenta between b-value acquisitions. Round 0's template is
the voxel-wise mean of all volumes. Each round registers every volume to the current template, the mean of
the *other* volumes (leave-one-out: a volume inside its own template pulls the template toward its current
position and slows convergence) (Mattes
mutual information, which copes with the steep fall of intensity with b, optionally restricted to a mask
on the template grid; round 1 runs a rigid then an affine stage, later rounds refine the previous round's
affine transform), then removes the transforms' mean from all of them (so the template stays at the
volumes' average position instead of drifting by their mean motion), resamples the volumes with their
transforms and averages them into the next template.

Convergence rule: each round's *displacement* is the mean, over volumes and template voxels (inside the
mask when one is given), of how far the round moved the volume's transform from the previous round's
|T_r(x) - T_{r-1}(x)| in mm (round 1: from the identity). After the minimum number of rounds, iteration
stops once a round moves less than ``tolerance_mm``, or at the maximum; the result is the round with the
smallest displacement (the most settled one).

Plausibility: tissue motion between acquisitions changes size by a few percent at most. A registration whose
affine transform scales by more than ``max_scale_change`` has run away (seen on low-SNR, high-b volumes of small
fields of view): that volume keeps its previous round's transform (round 1: its rigid one) for the round, and
the result counts these rejections. When a kept transform nevertheless scales by more than
``max_scale_change`` along any axis (a singular value of its matrix outside 1 +- that), the registration has
not found the anatomy (seen on small or thin volumes at low SNR) and an InputError says so, instead of
returning distorted volumes that would give wrong maps.

Transforms follow ITK's convention: ``transforms[v]`` maps a template (output-grid) point to the point of
volume v that is sampled there, i.e. it is what ``SimpleITK.Resample(volume_v, template, transforms[v])``
takes. All volumes share the input's grid, so the registered series keeps the input geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.geometry import array_to_sitk, physical_points_lps
from FastMRICommon.settings import setting
from IVIMEstimatorLib.diffusion_series import DiffusionSeries


@dataclass(frozen=True)
class MotionConfig:
    """Rounds (min, max), stop tolerance (mm), and the registration settings of each stage.

    ``seed`` seeds the metric's random sampling (``sampling_fraction`` of the voxels): every (round, volume)
    has its own fixed set of sample points, so later rounds do not inherit one sample's bias (benchmarked:
    keeping each volume's points in every round left up to 2.1 mm inter-volume error, new points per round
    1.2-1.35 mm; docs/benchmarks/registration.md). ITK runs on one thread during the correction (its default
    thread count is restored afterwards): its multithreaded metric sums in a varying order, and the same
    series would not always give the same transforms (seen: a 33% scaling on one run and 3% on another of
    the same data). One thread is slower; 5% sampling (was 10%) pays for it at the same accuracy."""

    rounds: tuple[int, int] = setting(
        (6, 10),
        "registration rounds MIN,MAX: at least MIN, then until a round moves "
        "less than the tolerance, at most MAX (1 <= MIN <= MAX)",
    )
    tolerance_mm: float = 0.1
    histogram_bins: int = 32
    sampling_fraction: float = 0.05
    rigid_iterations: int = 100
    affine_iterations: int = 60
    shrink_factors: tuple[int, ...] = (2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (2.0, 0.0)
    seed: int = 0
    max_scale_change: float = 0.10

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """InputError naming the rounds unless they are two whole numbers 1 <= MIN <= MAX (the one check of
        the rounds: ``ivimestimator``'s ``--rounds`` is checked here too)."""
        rounds = tuple(self.rounds)
        if (
            len(rounds) != 2
            or not all(isinstance(value, (int, np.integer)) for value in rounds)
            or not 1 <= rounds[0] <= rounds[1]
        ):
            raise InputError(f"rounds must be (min, max) with 1 <= min <= max, got {self.rounds}")


@dataclass
class MotionResult:
    """The registered series (input geometry), each volume's final transform (see the module docstring),
    the displacement of every round (mm), the round kept (1-based), and how many registrations were rejected
    as implausible (module docstring)."""

    series: DiffusionSeries
    transforms: list
    displacements_mm: list[float] = field(default_factory=list)
    chosen_round: int = 0
    rejected: int = 0


def scale_change(transform) -> float:
    """The largest relative change of size along any axis, |singular value of the matrix - 1|."""
    return float(np.max(np.abs(np.linalg.svd(_homogeneous(transform)[:3, :3], compute_uv=False) - 1)))


def check_plausible(transforms: list, max_scale_change: float) -> None:
    """InputError when a transform scales by more than ``max_scale_change`` (module docstring)."""
    for index, transform in enumerate(transforms):
        worst = scale_change(transform)
        if worst > max_scale_change:
            raise InputError(
                f"motion correction failed: volume {index + 1} would be scaled by {100 * worst:.0f}% "
                f"(more than {100 * max_scale_change:.0f}%, not tissue motion); restrict it with a mask "
                "around the organ, or estimate without motion correction"
            )


def _check_inputs(series: DiffusionSeries, mask: np.ndarray | None) -> np.ndarray | None:
    volumes = series.volumes
    if volumes.shape[0] < 2:
        raise InputError(f"motion correction needs at least 2 volumes, got {volumes.shape[0]}")
    if not np.all(np.isfinite(volumes)):
        raise InputError("the series contains NaN or infinite values")
    for index, volume in enumerate(volumes):
        if not np.any(volume):
            raise InputError(f"volume {index} is all zero: nothing to register")
    if min(volumes.shape[1:]) < 4:
        raise InputError(f"volumes of shape {volumes.shape[1:]} are too small to register (need >= 4 voxels per axis)")
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != volumes.shape[1:]:
        raise InputError(f"mask shape {mask.shape} differs from the volume shape {volumes.shape[1:]}")
    mask = mask > 0
    if mask.sum() < 64:
        raise InputError(
            f"the mask covers {int(mask.sum())} voxels; registration needs at least 64 "
            "(a mask that does not overlap the image?)"
        )
    return mask


def transform_points(transform, points: np.ndarray) -> np.ndarray:
    """``points [n, 3]`` (LPS, mm) mapped by a SimpleITK transform; None is the identity."""
    if transform is None:
        return points
    if hasattr(transform, "GetMatrix") and hasattr(transform, "GetCenter"):  # affine family: one matrix product
        matrix = _homogeneous(transform)
        return points @ matrix[:3, :3].T + matrix[:3, 3]
    return np.array([transform.TransformPoint(point) for point in points])


def _displacement(transform, previous, points: np.ndarray) -> float:
    """Mean |T(x) - P(x)| over ``points`` (LPS, mm); ``previous`` None = identity."""
    return float(
        np.mean(np.linalg.norm(transform_points(transform, points) - transform_points(previous, points), axis=1))
    )


def _homogeneous(transform) -> np.ndarray:
    """The 4 x 4 matrix of an affine SimpleITK transform (x -> A (x - c) + c + t) in LPS mm."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.reshape(transform.GetMatrix(), (3, 3))
    centre = np.asarray(transform.GetCenter())
    matrix[:3, 3] = centre + np.asarray(transform.GetTranslation()) - matrix[:3, :3] @ centre
    return matrix


def _affine(matrix: np.ndarray, centre: tuple[float, ...]):
    """A SimpleITK affine transform with ``centre`` (LPS mm) from a 4 x 4 matrix."""
    import SimpleITK as sitk

    transform = sitk.AffineTransform(3)
    transform.SetCenter(tuple(float(c) for c in centre))
    transform.SetMatrix(matrix[:3, :3].ravel().tolist())
    transform.SetTranslation((matrix[:3, 3] - np.asarray(centre) + matrix[:3, :3] @ np.asarray(centre)).tolist())
    return transform


def _remove_mean_transform(transforms: list) -> list:
    """Keep the template in the volumes' average position: compose every transform with the inverse of
    the mean transform (mean of the 4 x 4 matrices), so that the transforms average to the identity.
    Without this the template drifts from round to round by whatever the volumes' mean motion is."""
    matrices = [_homogeneous(transform) for transform in transforms]
    inverse_mean = np.linalg.inv(np.mean(matrices, axis=0))
    return [_affine(matrix @ inverse_mean, transform.GetCenter()) for matrix, transform in zip(matrices, transforms)]


def _register(fixed, moving, initial, config: MotionConfig, fixed_mask, iterations: int, seed: int):
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.histogram_bins)
    if config.sampling_fraction < 1.0:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(config.sampling_fraction, seed)
    else:
        method.SetMetricSamplingStrategy(method.NONE)  # every voxel: a deterministic metric
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-4,
        numberOfIterations=iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(config.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(config.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=False)
    result = method.Execute(fixed, moving)
    if isinstance(result, sitk.CompositeTransform):  # Execute wraps the optimised transform
        result = result.GetNthTransform(0)
    return result.Downcast()


def _rigid_then_affine(fixed, moving, config: MotionConfig, fixed_mask, seed: int):
    import SimpleITK as sitk

    rigid = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    rigid = sitk.Euler3DTransform(_register(fixed, moving, rigid, config, fixed_mask, config.rigid_iterations, seed))
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    return _refine_affine(fixed, moving, affine, config, fixed_mask, seed), affine


def _refine_affine(fixed, moving, affine, config: MotionConfig, fixed_mask, seed: int):
    import SimpleITK as sitk

    return sitk.AffineTransform(_register(fixed, moving, affine, config, fixed_mask, config.affine_iterations, seed))


def motion_correct(
    series: DiffusionSeries,
    mask: np.ndarray | None = None,
    config: MotionConfig = MotionConfig(),
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> MotionResult:
    """Register every volume of ``series`` to an iteratively refined mean template (module docstring).

    ``mask``: optional boolean ``[k, j, i]`` on the series grid restricting the metric (e.g. the placenta
    and a margin). The input series is not modified; the result holds a new array.
    """
    import SimpleITK as sitk

    config.validate()
    mask = _check_inputs(series, mask)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # reproducible (MotionConfig)
    try:
        return _motion_correct(series, mask, config, progress, cancel)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _motion_correct(
    series: DiffusionSeries,
    mask: np.ndarray | None,
    config: MotionConfig,
    progress: ProgressCallback | None,
    cancel: CancelCheck | None,
) -> MotionResult:
    import SimpleITK as sitk

    volumes = series.volumes.astype(np.float32)
    images = [array_to_sitk(volume, series.geometry) for volume in volumes]
    fixed_mask = None if mask is None else array_to_sitk(mask.astype(np.uint8), series.geometry)
    # points where displacements are measured: template voxels (in the mask), at most ~4000 of them
    index = np.argwhere(mask) if mask is not None else np.argwhere(np.ones(volumes.shape[1:], bool))
    index = index[:: max(1, len(index) // 4000)]
    points = physical_points_lps(series.geometry, index)

    low, high = config.rounds
    total = volumes.sum(axis=0, dtype=np.float64)
    current = volumes
    transforms: list = [None] * len(images)
    displacements: list[float] = []
    best: tuple[float, int, list, np.ndarray] | None = None  # the kept round: displacement, number, result
    steps, step, rejected = high * len(images), 0, 0
    for round_number in range(1, high + 1):
        previous = transforms
        transforms = []
        registered = np.empty_like(volumes)
        for volume_index, moving in enumerate(images):
            raise_if_cancelled(cancel)
            seed = 1 + config.seed + 1000 * round_number + volume_index  # MotionConfig; ITK's 0 = wall clock
            template = array_to_sitk(
                ((total - current[volume_index]) / (len(images) - 1)).astype(np.float32), series.geometry
            )
            if previous[volume_index] is None:
                transform, fallback = _rigid_then_affine(template, moving, config, fixed_mask, seed)
            else:
                fallback = sitk.AffineTransform(previous[volume_index])
                transform = _refine_affine(template, moving, fallback, config, fixed_mask, seed)
            if scale_change(transform) > config.max_scale_change:  # a runaway registration (module docstring)
                transform, rejected = fallback, rejected + 1
            transforms.append(transform)
            step += 1
            report(progress, step / steps, f"round {round_number}: volume {volume_index + 1}/{len(images)} registered")
        transforms = _remove_mean_transform(transforms)
        for volume_index, (moving, transform) in enumerate(zip(images, transforms)):
            registered[volume_index] = sitk.GetArrayFromImage(
                sitk.Resample(moving, moving, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
            )
        moved = float(np.mean([_displacement(t, p, points) for t, p in zip(transforms, previous)]))
        displacements.append(moved)
        if round_number >= low and (best is None or moved < best[0]):
            best = (moved, round_number, transforms, registered)
        total, current = registered.sum(axis=0, dtype=np.float64), registered
        if round_number >= low and moved < config.tolerance_mm:
            break
    if best is None:  # not reached: config.validate() makes 1 <= MIN <= MAX, so round MAX is a candidate
        raise InputError(f"rounds must be (min, max) with 1 <= min <= max, got {config.rounds}")
    moved, kept, transforms, registered = best
    check_plausible(transforms, config.max_scale_change)
    report(
        progress,
        1.0,
        f"kept round {kept} of {len(displacements)} (displacement {moved:.3f} mm)"
        + (f"; {rejected} implausible registrations rejected" if rejected else ""),
    )
    return MotionResult(
        DiffusionSeries(registered, series.bvalues, series.geometry), transforms, displacements, kept, rejected
    )
