"""Motion correction: a moved phantom gets realigned, transforms follow ITK's resampling convention, files
are written as documented, and bad input is refused without touching the data."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from FastMRICommon.errors import Cancelled, InputError
from FastMRICommon.geometry import array_to_sitk
from FastMRICommon.volume_files import read_volume_array, write_volume_array
from IVIMEstimatorLib.diffusion_series import DiffusionSeries, read_series_array, write_series_array
from IVIMEstimatorLib.motion import MotionConfig, motion_correct, scale_change
from IVIMEstimatorLib.phantoms.motion_phantom import MotionRange, moving_placenta_phantom, residual_displacements
from IVIMEstimatorLib.phantoms.phantom import LABELS

BVALUES = np.array([0.0, 50.0, 200.0, 500.0])
FAST = MotionConfig(rounds=(2, 3), rigid_iterations=60, affine_iterations=30)


@pytest.fixture(scope="module")
def moved():
    return moving_placenta_phantom(
        MotionRange(4.0, 4.0, 0.03), bvalues=BVALUES, seed=3, shape=(12, 64, 64), spacing_mm=(2.5, 2.5, 4.0)
    )


@pytest.fixture(scope="module")
def corrected(moved):
    before = moved.series.volumes.copy()
    result = motion_correct(moved.series, config=FAST)
    np.testing.assert_array_equal(moved.series.volumes, before)  # the input is never modified
    return result


def test_moved_volumes_are_realigned(moved, corrected):
    placenta = moved.phantom.labels == LABELS["placenta"]
    residual = residual_displacements(moved, corrected.transforms, placenta)
    assert residual["before_inter_volume_mean_mm"] > 2.0
    assert residual["after_inter_volume_mean_mm"] < 0.35 * residual["before_inter_volume_mean_mm"]
    assert corrected.series.volumes.shape == moved.series.volumes.shape
    assert corrected.series.geometry == moved.series.geometry
    np.testing.assert_array_equal(corrected.series.bvalues, BVALUES)
    assert 2 <= corrected.chosen_round <= len(corrected.displacements_mm) <= 3
    assert corrected.displacements_mm[0] > corrected.displacements_mm[-1]  # round 1 moves most


def test_each_transform_resamples_its_volume_onto_the_template_grid(moved, corrected):
    """The documented convention: Resample(volume v, reference grid, transforms[v]) is registered volume v."""
    geometry = moved.series.geometry
    for index in (0, len(BVALUES) - 1):
        image = array_to_sitk(moved.series.volumes[index], geometry)
        again = sitk.GetArrayFromImage(sitk.Resample(image, image, corrected.transforms[index], sitk.sitkLinear, 0.0))
        np.testing.assert_allclose(again, corrected.series.volumes[index], atol=1e-4)


def test_the_same_series_gives_the_same_transforms(moved, corrected):
    """Registration is reproducible (ITK on one thread, fixed sample points): a second run of the same
    series gives bit-identical transforms and volumes, and ITK's thread count is given back."""
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    again = motion_correct(moved.series, config=FAST)
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads
    for first, second in zip(corrected.transforms, again.transforms):
        assert first.GetParameters() == second.GetParameters()
    np.testing.assert_array_equal(again.series.volumes, corrected.series.volumes)
    assert again.displacements_mm == corrected.displacements_mm


def test_implausible_registrations_fall_back_to_the_previous_transform(moved):
    """With a limit below the phantom's own 3% scaling, every affine result that scales more is rejected and
    the volume keeps its rigid (round 1) or previous transform: the series is still realigned, rigidly."""
    strict = replace(FAST, max_scale_change=0.005)
    result = motion_correct(moved.series, config=strict)
    assert result.rejected > 0
    assert max(scale_change(transform) for transform in result.transforms) <= 0.005
    placenta = moved.phantom.labels == LABELS["placenta"]
    residual = residual_displacements(moved, result.transforms, placenta)
    assert (
        residual["after_inter_volume_mean_mm"] < 0.7 * residual["before_inter_volume_mean_mm"]
    )  # rigid: not the 3% scaling


def test_registration_can_be_cancelled_and_reports_progress(moved):
    seen = []
    with pytest.raises(Cancelled):
        motion_correct(
            moved.series,
            config=FAST,
            progress=lambda fraction, message: seen.append(fraction),
            cancel=lambda: len(seen) >= 2,
        )
    assert seen and all(0 < value <= 1 for value in seen)


def test_the_kept_transforms_average_to_the_identity(moved, corrected):
    """The template is held at the volumes' mean position (the mean transform is removed every round)."""
    matrices = []
    for transform in corrected.transforms:
        matrix = np.eye(4)
        matrix[:3, :3] = np.reshape(transform.GetMatrix(), (3, 3))
        centre = np.asarray(transform.GetCenter())
        matrix[:3, 3] = centre + np.asarray(transform.GetTranslation()) - matrix[:3, :3] @ centre
        matrices.append(matrix)
    np.testing.assert_allclose(np.mean(matrices, axis=0), np.eye(4), atol=1e-9)


def test_transform_points_matches_itk_for_affine_and_other_transforms():
    from IVIMEstimatorLib.motion import transform_points
    from IVIMEstimatorLib.phantoms.motion_phantom import random_affine

    points = np.random.default_rng(0).uniform(-80, 80, (50, 3))
    affine = random_affine(np.random.default_rng(1), MotionRange(), np.array([3.0, -2.0, 5.0]))
    translation = sitk.TranslationTransform(3, (1.0, -2.0, 0.5))  # no matrix: the point-by-point path
    for transform in (affine, sitk.Euler3DTransform((1, 2, 3), 0.1, 0.2, 0.05, (1, -1, 2)), translation):
        expected = np.array([transform.TransformPoint(point) for point in points])
        np.testing.assert_allclose(transform_points(transform, points), expected, atol=1e-9)


def test_the_thin_slice_phantom_is_acquired_on_the_requested_grid():
    """The object moves on thin slices and is acquired on the requested grid: zero motion gives the
    motion-free series exactly, and the slice-averaged truth maps and labels live on that grid."""
    shape, spacing = (6, 32, 32), (5.0, 5.0, 4.0)
    still = moving_placenta_phantom(
        MotionRange(), bvalues=BVALUES[:2], seed=1, moved=False, shape=shape, spacing_mm=spacing
    )
    shifted = moving_placenta_phantom(
        MotionRange(0.0, 0.0, 0.0), bvalues=BVALUES[:2], seed=1, shape=shape, spacing_mm=spacing
    )
    assert still.phantom.f.shape == shape and still.series.volumes.shape == (2, *shape)
    np.testing.assert_allclose(shifted.series.volumes, still.series.volumes)  # zero motion = motion-free
    assert set(np.unique(still.phantom.labels)) <= set(LABELS.values()) | {0}
    assert np.all(still.phantom.f[still.phantom.labels == LABELS["placenta"]] > 0)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: v[:1], "at least 2 volumes"),
        (lambda v: np.concatenate([v[:2], np.zeros_like(v[:1])]), "volume 2 is all zero"),
        (lambda v: np.where(np.arange(v.shape[-1]) == 3, np.nan, v), "NaN or infinite"),
    ],
)
def test_bad_series_are_refused(moved, change, message):
    volumes = change(moved.series.volumes.copy())
    with pytest.raises(InputError, match=message):
        motion_correct(DiffusionSeries(volumes, None, moved.series.geometry))


def test_a_mask_that_does_not_overlap_or_fit_is_refused(moved):
    empty = np.zeros(moved.series.volumes.shape[1:], bool)
    with pytest.raises(InputError, match="does not overlap"):
        motion_correct(moved.series, mask=empty)
    with pytest.raises(InputError, match="differs from the volume shape"):
        motion_correct(moved.series, mask=np.ones((3, 3, 3), bool))


def test_register_command_writes_series_and_transforms(tmp_path, moved, run_cli):
    source = write_series_array(moved.series, tmp_path / "dwi.nii.gz")
    result = run_cli(
        "ivimestimator",
        "register",
        str(source),
        str(tmp_path / "registered.nii.gz"),
        "--transforms-dir",
        str(tmp_path / "tfm"),
        "--rounds",
        "1,2",
    )
    assert result.returncode == 0, result.stderr
    registered = read_series_array(tmp_path / "registered.nii.gz")
    assert registered.volumes.shape == moved.series.volumes.shape
    assert registered.geometry.matches(moved.series.geometry)
    np.testing.assert_array_equal(registered.bvalues, BVALUES)
    names = sorted(path.name for path in (tmp_path / "tfm").iterdir())
    assert names == [f"{index:04d}.tfm" for index in range(len(BVALUES))]
    transform = sitk.ReadTransform(str(tmp_path / "tfm" / "0003.tfm"))
    image = array_to_sitk(moved.series.volumes[3], moved.series.geometry)
    again = sitk.GetArrayFromImage(sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0))
    assert np.corrcoef(again.ravel(), registered.volumes[3].ravel())[0, 1] > 0.999


def test_register_command_refuses_a_single_volume(tmp_path, moved, run_cli):
    (tmp_path / "folder").mkdir()
    write_volume_array(moved.series.volumes[0], moved.series.geometry, tmp_path / "folder" / "b0.nrrd")
    result = run_cli("ivimestimator", "register", str(tmp_path / "folder"), str(tmp_path / "out.nii.gz"))
    assert result.returncode == 2 and "at least 2 volumes" in result.stderr
    assert not (tmp_path / "out.nii.gz").exists()


def test_fit_command_can_motion_correct_first(tmp_path, moved, run_cli):
    source = write_series_array(moved.series, tmp_path / "dwi.nii.gz")
    result = run_cli(
        "ivimestimator",
        "fit",
        str(source),
        str(tmp_path / "maps"),
        "--method",
        "nlls",
        "--motion-correct",
        "--rounds",
        "1,1",
        "-v",
    )
    assert result.returncode == 0, result.stderr
    assert "motion correction: displacement per round" in result.stderr
    f, geometry = read_volume_array(tmp_path / "maps" / "f.nrrd")
    assert f.shape == moved.series.volumes.shape[1:] and geometry.matches(moved.series.geometry)


def test_implausible_scaling_is_refused():
    import SimpleITK as sitk

    from IVIMEstimatorLib.motion import check_plausible

    moved = sitk.AffineTransform(3)
    moved.SetTranslation((3.0, -2.0, 1.0))
    moved.SetMatrix((1.03, 0.0, 0.0, 0.0, 0.98, 0.0, 0.0, 0.0, 1.0))  # 3% scaling: tissue motion
    check_plausible([moved, sitk.AffineTransform(3)], 0.10)
    distorted = sitk.AffineTransform(3)
    distorted.SetMatrix((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.75))
    with pytest.raises(InputError, match="volume 2 would be scaled by 25%"):
        check_plausible([moved, distorted], 0.10)
