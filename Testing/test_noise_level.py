"""Noise level measured from the image (``noise_level``): accuracy from SNR 5 to 1000, noise-free and
zero-background images, noise that varies in space, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from FastMRICommon.errors import InputError
from FastMRReconLib.kspace.sense import sense_reconstruction
from FastMRReconLib.kspace.simulate import AcquisitionConfig, simulate_slice
from FastMRReconLib.model.noise_level import FLOOR, noise_map, noise_maps, noise_sd


def phantom(rows: int = 192, columns: int = 160) -> np.ndarray:
    """A head-like ellipse with an intensity gradient and two inclusions, zero outside."""
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : columns * 1j]
    head = ((x / 0.8) ** 2 + (y / 0.9) ** 2 < 1).astype(float)
    return head * (1 + 0.3 * x + 0.6 * ((x - 0.2) ** 2 + y**2 < 0.08) - 0.4 * ((x + 0.3) ** 2 + (y - 0.3) ** 2 < 0.03))


def magnitude_with_noise(image: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """|image + complex Gaussian noise of SD ``sd`` per channel|, zero where the image is zero (as SENSE)."""
    noise = sd * (rng.standard_normal(image.shape) + 1j * rng.standard_normal(image.shape))
    return np.abs(image + noise) * (image > 0)


@pytest.mark.parametrize("snr", [5, 10, 30, 100, 300, 1000])
def test_estimate_within_10_percent_from_snr_5_to_1000(snr):
    image = phantom()
    sd = image[image > 0].mean() / snr
    noisy = magnitude_with_noise(image, sd, np.random.default_rng(snr))
    assert noise_sd(noisy) == pytest.approx(sd, rel=0.1)
    assert np.median(noise_map(noisy)[image > 0]) == pytest.approx(sd, rel=0.1)


def test_integer_dicom_range_image_is_measured_in_its_units():
    image = phantom() * 2000
    noisy = np.round(magnitude_with_noise(image, 40.0, np.random.default_rng(3))).astype(np.uint16)
    assert noise_sd(noisy) == pytest.approx(40.0, rel=0.1)


def test_noise_free_image_gives_the_floor_never_zero_or_nan():
    image = phantom()
    floor = FLOOR * np.percentile(image, 99)
    assert noise_sd(image) == pytest.approx(floor)
    maps = noise_map(image)
    assert np.all(np.isfinite(maps)) and maps.min() > 0


def test_sense_image_with_zero_background_and_g_factor():
    image = phantom(160, 144)
    noisy = simulate_slice(image, AcquisitionConfig(acceleration=2.0, snr=40.0, coils=8), np.random.default_rng(1))
    clean = simulate_slice(image, AcquisitionConfig(acceleration=2.0, snr=np.inf, coils=8), np.random.default_rng(1))
    sense, truth = (sense_reconstruction(scan.kspace, scan.mask) for scan in (noisy, clean))
    assert np.mean(sense == 0) > 0.05  # the background really is zero
    inside = truth > 0.1 * truth.max()
    assert noise_sd(sense) == pytest.approx(np.std((sense - truth)[inside]), rel=0.2)


def test_map_follows_noise_that_varies_in_space():
    image = phantom(256, 256)
    rng = np.random.default_rng(2)
    low, high = magnitude_with_noise(image, 0.02, rng), magnitude_with_noise(image, 0.06, rng)
    maps = noise_map(np.concatenate([low[:, :128], high[:, 128:]], axis=1))
    inside = image > 0
    left, right = (np.median(maps[:, columns][inside[:, columns]]) for columns in (slice(40, 72), slice(184, 216)))
    assert left == pytest.approx(0.02, rel=0.15)
    assert right == pytest.approx(0.06, rel=0.15)


def test_empty_slice_of_a_volume_takes_the_volume_level():
    image = phantom()
    rng = np.random.default_rng(4)
    volume = np.stack(
        [magnitude_with_noise(image, 0.05, rng), np.zeros_like(image), magnitude_with_noise(image, 0.05, rng)]
    )
    maps = noise_maps(volume)
    assert np.all(np.isfinite(maps)) and maps.min() > 0
    assert np.median(maps[1]) == pytest.approx(0.05, rel=0.15)


@pytest.mark.parametrize(
    "bad, message",
    [(np.zeros((4, 4, 4)), "2D"), (np.full((64, 64), np.nan), "finite"), (np.ones((64, 64), complex), "real")],
)
def test_bad_input_is_refused_with_one_line(bad, message):
    with pytest.raises(InputError, match=message):
        noise_sd(bad)
