"""k-space simulation: FFTs, masks, coil maps, noise level and the accelerated scan."""

from __future__ import annotations

import numpy as np
import pytest

from FastMRICommon.errors import InputError
from FastMRReconLib.kspace.coils import coil_sensitivities
from FastMRReconLib.kspace.fft import fft2c, ifft2c
from FastMRReconLib.kspace.masks import EquispacedMask, VariableDensityMask, make_mask
from FastMRReconLib.kspace.sense import sense_reconstruction
from FastMRReconLib.kspace.simulate import (
    AcquisitionConfig,
    acquired_region,
    simulate_slice,
    simulate_volume,
    zero_filled_rss,
)


def disc_image(n=96) -> np.ndarray:
    y, x = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    return ((x**2 + y**2) < 0.7).astype(float) * (1 + 0.5 * ((x - 0.2) ** 2 + y**2 < 0.05))


def test_centred_fft_is_orthonormal_and_inverts():
    image = np.random.default_rng(0).standard_normal((2, 33, 40)) + 1j
    kspace = fft2c(image)
    np.testing.assert_allclose(np.sum(np.abs(kspace) ** 2), np.sum(np.abs(image) ** 2))
    np.testing.assert_allclose(ifft2c(kspace), image, atol=1e-12)
    constant = np.ones((8, 8))
    assert np.argmax(np.abs(fft2c(constant))) == np.ravel_multi_index((4, 4), (8, 8))  # DC in the centre


@pytest.mark.parametrize("mask_class", [EquispacedMask, VariableDensityMask])
@pytest.mark.parametrize("acceleration", [1.5, 2.0, 3.0, 4.0])
def test_masks_acquire_n_over_r_lines_with_a_full_centre(mask_class, acceleration):
    mask = mask_class(acceleration=acceleration, center_fraction=0.08)(256, seed=7)
    assert mask.sum() == round(256 / acceleration)
    assert mask[128 - 10 : 128 + 10].all()
    np.testing.assert_array_equal(mask, mask_class(acceleration, 0.08)(256, seed=7))
    assert not np.array_equal(mask_class(3.0, 0.08)(256, seed=1), mask_class(3.0, 0.08)(256, seed=2))


def test_variable_density_is_denser_near_the_centre():
    masks = np.array([VariableDensityMask(4.0, 0.08)(256, seed=s) for s in range(50)])
    inner, outer = masks[:, 64:96].mean(), np.r_[masks[:, :32].ravel(), masks[:, -32:].ravel()].mean()
    assert inner > 2 * outer


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"acceleration": 0.5}, "at least 1"),
        ({"acceleration": float("nan")}, "at least 1"),
        ({"acceleration": 2, "center_fraction": 1.5}, r"in \(0, 1\)"),
        ({"acceleration": 2, "center_fraction": 0.0}, r"in \(0, 1\)"),
    ],
)
def test_bad_mask_parameters(kwargs, message):
    """A mask's own domain: R >= 1 and a centre fraction in (0, 1); the ranges a user may choose are
    SimulationSettings' (below)."""
    with pytest.raises(InputError, match=message):
        EquispacedMask(**{"center_fraction": 0.08, **kwargs})
    with pytest.raises(InputError, match="unknown mask"):
        make_mask("spiral", 2.0, 0.08)
    assert make_mask("equispaced", 20.0, 0.01)(256, seed=0).sum() == round(256 / 20)  # beyond the settings' 16


def test_simulation_settings_are_the_acquisition_defaults_and_check_their_ranges():
    """One home per setting: SimulationSettings' fields hold the defaults AcquisitionConfig uses, and making
    settings outside their ranges is one InputError naming the setting (the CLI's exit 2)."""
    from FastMRICommon.settings import settings_field
    from FastMRReconLib.kspace.masks import MASKS
    from FastMRReconLib.kspace.simulate import COMBINATIONS, SimulationSettings

    settings = SimulationSettings()
    assert settings.acquisition() == AcquisitionConfig()
    assert (AcquisitionConfig().center_fraction, AcquisitionConfig().acceleration) == (0.08, 2.0)
    assert settings_field(SimulationSettings, "mask").setting.choices == tuple(MASKS)
    assert settings_field(SimulationSettings, "combine").setting.choices == COMBINATIONS
    custom = SimulationSettings(acceleration=3.0, resolution_rows=0.5, resolution_columns=0.25, seed=7, averages=2)
    assert custom.acquisition() == AcquisitionConfig(acceleration=3.0, resolution=(0.5, 0.25), seed=7, averages=2)
    for field, value, message in (
        ("acceleration", 17.0, "acceleration must be between 1 and 16; got 17"),
        ("acceleration", 0.5, "acceleration must be between 1 and 16"),
        ("center_fraction", 0.6, "center fraction must be between 0.01 and 0.5"),
        ("coils", 33, "coils must be between 1 and 32; got 33"),
        ("seed", -1, "seed must be between 0 and 2147483647; got -1"),
        ("snr", float("nan"), "snr must be a number"),
        ("resolution_rows", 0.0, "resolution rows must be between 0.1 and 1"),
        ("mask", "spiral", "mask must be one of equispaced, variable-density"),
        ("combine", "adaptive", "combine must be one of sense, rss"),
    ):
        with pytest.raises(InputError, match=message):
            SimulationSettings(**{field: value})


def test_acquisition_config_domains():
    """What the simulation itself accepts, beyond the settings' ranges (training, benchmarks): any R >= 1, an
    infinite SNR (noise-free); a negative or non-integer seed is an InputError, not numpy's ValueError."""
    assert AcquisitionConfig(acceleration=20.0, snr=np.inf).snr == np.inf
    for kwargs, message in (
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"seed": 1.5}, "seed"),
        ({"coils": 0}, "coils must be >= 1"),
        ({"snr": 0.0}, "SNR must be > 0"),
        ({"acceleration": 0.9}, "at least 1"),
    ):
        with pytest.raises(InputError, match=message):
            AcquisitionConfig(**kwargs)


def test_coil_maps_vary_in_space_and_combine_to_one():
    maps = coil_sensitivities((64, 80), 8, seed=0)
    assert maps.shape == (8, 64, 80) and np.iscomplexobj(maps)
    np.testing.assert_allclose(np.sqrt(np.sum(np.abs(maps) ** 2, axis=0)), 1.0, rtol=1e-5)
    for coil in np.abs(maps):
        assert coil.max() / coil.min() > 3  # a loop sees its side of the head much better
    assert np.ptp(np.angle(maps[0])) > 1.0


def measured_snr(averages: int) -> float:
    image = disc_image()
    config = AcquisitionConfig(acceleration=1.0, averages=averages, snr=30.0, seed=averages)
    rng = np.random.default_rng(0)
    differences = [zero_filled_rss(simulate_slice(image, config, rng).kspace) - image for _ in range(6)]
    inside = (image > 0) & (disc_image() < 1.2)
    return float(image[inside].mean() / np.std(np.array(differences)[:, inside]))


def test_noise_matches_the_requested_snr_and_falls_with_averages():
    one, two = measured_snr(1), measured_snr(2)
    assert 25 < one < 35
    assert 1.25 < two / one < 1.6  # sqrt(2) = 1.41


def test_undersampling_aliases_and_keeps_scale():
    image = disc_image()
    full = simulate_volume(image[None], AcquisitionConfig(acceleration=1.0, snr=1e6), combine="rss")[0]
    fast = simulate_volume(image[None], AcquisitionConfig(acceleration=3.0, snr=1e6), combine="rss")[0]
    error_full, error_fast = np.abs(full - image).mean(), np.abs(fast - image).mean()
    assert error_full < 1e-3 and error_fast > 20 * error_full
    assert abs(fast[image > 0].mean() / image[image > 0].mean() - 1) < 0.1
    # SENSE (the default) unfolds it; 16 calibration lines of this small 96-line image for the coil maps
    unfolded = simulate_volume(image[None], AcquisitionConfig(acceleration=3.0, snr=1e6, center_fraction=0.16))[0]
    assert np.abs(unfolded - image).mean() < 0.5 * error_fast
    with pytest.raises(InputError, match="coil combination"):
        simulate_volume(image[None], AcquisitionConfig(), combine="adaptive")


def test_simulate_volume_refuses_bad_volumes():
    with pytest.raises(InputError, match="constant"):
        simulate_volume(np.ones((2, 16, 16)), AcquisitionConfig())
    bad = disc_image(16)[None].copy()
    bad[0, 3, 3] = np.nan
    with pytest.raises(InputError, match="finite"):
        simulate_volume(bad, AcquisitionConfig())
    with pytest.raises(InputError, match="3D volume"):
        simulate_volume(disc_image(16), AcquisitionConfig())
    with pytest.raises(InputError, match="averages"):
        AcquisitionConfig(averages=0)


def test_simulate_volume_takes_magnitude_images_only():
    """The rule (``check_magnitude``): minimum >= -10% of the 99th percentile, values within +-1e12."""
    volume = 100.0 * disc_image(32)[None]
    high = np.percentile(volume, 99)
    config = AcquisitionConfig(acceleration=2.0, coils=4, center_fraction=0.2)
    with pytest.raises(InputError, match=r"negative values .* below -10% of its 99th percentile .* magnitude image"):
        simulate_volume(volume - 0.11 * high, config)  # a real part, a difference image
    noise_floor = volume.copy()
    noise_floor[0, :4, :4] = -0.09 * high  # zero-mean background noise, interpolation overshoot
    assert simulate_volume(noise_floor, config).shape == volume.shape
    with pytest.raises(InputError, match=r"beyond ±1e\+12 \(largest 1.5e\+20\)"):
        simulate_volume(volume * 1e18, config)  # its squares overflow float32
    for combine in ("rss", "sense"):
        huge = simulate_volume(volume / volume.max() * 1e12, config, combine=combine)
        assert np.all(np.isfinite(huge)) and huge.dtype == np.float32
        np.testing.assert_allclose(
            huge / 1e12, simulate_volume(volume / volume.max(), config, combine=combine), rtol=1e-4, atol=1e-4
        )


def test_a_lower_acquired_resolution_gives_ringing_and_correlated_noise_on_the_same_grid():
    region = acquired_region((96, 60), (0.5, 1.0))
    assert region.shape == (96, 60) and region.sum() == 48 * 60 and region[48].all() and not region[:24].any()
    rng = np.random.default_rng(0)
    noise_images = {}
    for resolution in ((1.0, 1.0), (0.5, 0.5)):
        config = AcquisitionConfig(acceleration=1.0, coils=4, snr=1.0, resolution=resolution)
        scan = simulate_slice(np.zeros((96, 96)), config, rng, noise_reference=1.0)  # noise only
        noise_images[resolution] = ifft2c(scan.kspace)[0]
    full, half = noise_images[(1.0, 1.0)], noise_images[(0.5, 0.5)]
    assert half.std() / full.std() == pytest.approx(0.5, rel=0.1)  # a quarter of the samples: half the SD

    def neighbour_correlation(noise):
        return np.real(np.mean(noise[1:] * np.conj(noise[:-1]))) / np.mean(np.abs(noise) ** 2)

    assert abs(neighbour_correlation(full)) < 0.05 and neighbour_correlation(half) > 0.4
    square = np.zeros((96, 96))
    square[24:72, 24:72] = 1.0
    profiles = {}
    for resolution in ((1.0, 1.0), (0.5, 0.5)):
        config = AcquisitionConfig(acceleration=1.0, coils=8, snr=1e6, resolution=resolution)
        scan = simulate_slice(square, config, np.random.default_rng(1))
        profiles[resolution] = sense_reconstruction(scan.kspace, scan.mask)[48]
    assert profiles[(1.0, 1.0)].max() < 1.02  # an object on the grid: no ringing
    assert profiles[(0.5, 0.5)].max() > 1.05  # truncated k-space: Gibbs overshoot at the edges
    with pytest.raises(InputError, match=r"resolution must be two fractions in \(0, 1\]"):
        AcquisitionConfig(resolution=(0.0, 1.0))
