"""The noise level of a DWI series measured from the data: Rayleigh background and fit residuals, against
simulated series of known SNR, and the cases without a usable background."""

from __future__ import annotations

import numpy as np
import pytest

from FastMRICommon.errors import InputError
from IVIMEstimatorLib.noise import background_noise_sd, estimate_noise_sd, residual_noise_sd
from IVIMEstimatorLib.phantoms.phantom import placenta_phantom
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES, add_rician_noise, ivim_signal


@pytest.mark.parametrize("snr", [5.0, 20.0, 50.0, 200.0])
def test_background_gives_the_noise_of_the_phantom_at_every_snr(snr):
    """The phantom's noise SD is 1 / SNR (placenta S0 = 1); its air is Rayleigh."""
    series = placenta_phantom(shape=(3, 64, 64), snr=snr, seed=2).series
    estimate = estimate_noise_sd(series.volumes, series.bvalues)
    assert estimate.source == "background" and estimate.sd * snr == pytest.approx(1.0, rel=0.05)


def test_a_series_without_background_falls_back_to_the_fit_residuals():
    phantom = placenta_phantom(shape=(3, 96, 96), snr=40.0, seed=3)
    inside = phantom.series.volumes[:, :, 30:66, 30:66]  # cropped inside the body: no air
    assert background_noise_sd(inside) is None
    estimate = estimate_noise_sd(inside, phantom.series.bvalues)
    assert estimate.source == "residuals" and estimate.sd * 40.0 == pytest.approx(1.0, rel=0.25)


def test_zero_filled_air_is_not_taken_for_noise():
    series = placenta_phantom(shape=(3, 64, 64), snr=30.0, seed=4).series
    volumes = series.volumes.copy()
    air = series.volumes.mean(axis=0) < 0.15
    volumes[:, air] = 0.0  # a masked or zero-filled background
    assert background_noise_sd(volumes) is None or background_noise_sd(volumes).sd * 30.0 == pytest.approx(1, rel=0.1)


@pytest.mark.parametrize("bvalues", [ACQUIRED_BVALUES, ACCELERATED_BVALUES], ids=["10 b-values", "6 b-values"])
@pytest.mark.parametrize("snr", [10.0, 30.0, 100.0])
def test_fit_residuals_give_the_noise_of_bare_voxel_signals(bvalues, snr):
    rng = np.random.default_rng(5)
    count = 1500
    f, D, Dstar = rng.uniform(0.1, 0.4, count), rng.uniform(1e-3, 2.5e-3, count), rng.uniform(0.01, 0.08, count)
    signals = add_rician_noise(ivim_signal(bvalues, f, D, Dstar, 250.0), 250.0 / snr, rng)
    estimate = residual_noise_sd(signals, bvalues)
    assert estimate.source == "residuals" and estimate.sd / (250.0 / snr) == pytest.approx(1.0, rel=0.1)


def test_what_the_residuals_cannot_measure_gets_one_clear_error():
    signals = np.ones((500, 4))
    with pytest.raises(InputError, match="at least 5 b-values"):
        residual_noise_sd(signals, np.array([0.0, 100.0, 200.0, 500.0]))
    with pytest.raises(InputError, match="b = 0"):
        residual_noise_sd(np.ones((500, 6)), np.array([10.0, 20.0, 50.0, 100.0, 200.0, 500.0]))
    with pytest.raises(InputError, match="too few voxels"):
        residual_noise_sd(np.ones((20, 6)), ACCELERATED_BVALUES)
    with pytest.raises(InputError, match=r"\[n, k, j, i\]"):
        background_noise_sd(np.ones((6, 8, 8)))


def test_the_fit_reports_the_noise_it_was_given_or_measured():
    """IvimModel.fit(noise_sd=None) measures the noise from its voxels' residuals and reports it; a given SD is
    reported as given; a non-positive one is refused."""
    from IVIMEstimatorLib.fits.model import IvimModel

    rng = np.random.default_rng(6)
    count = 3000
    f, D, Dstar = rng.uniform(0.1, 0.4, count), rng.uniform(1e-3, 2.5e-3, count), rng.uniform(0.01, 0.08, count)
    signals = add_rician_noise(ivim_signal(ACQUIRED_BVALUES, f, D, Dstar, 500.0), 500.0 / 25.0, rng)
    model = IvimModel(ACQUIRED_BVALUES, "nlls")
    measured = model.fit(signals)
    assert measured.noise.source == "residuals" and measured.noise.sd / 20.0 == pytest.approx(1.0, rel=0.1)
    given = model.fit(signals[:50], noise_sd=12.5)
    assert (given.noise.source, given.noise.sd) == ("given", 12.5)
    assert model.fit(signals[:50]).noise is None  # too few voxels to measure: unknown, the fit still runs
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="noise SD must be a positive number"):
            model.fit(signals[:50], noise_sd=bad)


def test_the_fit_command_reports_the_measured_or_given_noise(tmp_path, run_cli):
    from IVIMEstimatorLib.diffusion_series import write_series_array

    series = placenta_phantom(shape=(3, 48, 48), snr=25.0, seed=7).series
    path = write_series_array(series, tmp_path / "dwi.nii.gz")
    result = run_cli("ivimestimator", "fit", str(path), str(tmp_path / "maps"), "--method", "nlls")
    assert result.returncode == 0, result.stderr
    reported = float(result.stderr.split("noise SD ")[1].split()[0])
    assert "(background)" in result.stderr and reported * 25.0 == pytest.approx(1.0, rel=0.05)
    result = run_cli(
        "ivimestimator", "fit", str(path), str(tmp_path / "given"), "--method", "nlls", "--noise-sd", "0.5"
    )
    assert result.returncode == 0 and "noise SD 0.5 (given)" in result.stderr
    result = run_cli("ivimestimator", "fit", str(path), str(tmp_path / "bad"), "--noise-sd", "0")
    assert result.returncode == 2 and not (tmp_path / "bad").exists()
