"""IVIM estimation: accuracy of the classic fits, OSIPI reference signals, and bad-input handling."""

from __future__ import annotations

import numpy as np
import osipi
import pytest
from conftest import requires_shared

from FastMRICommon.errors import Cancelled, InputError
from IVIMEstimatorLib.fits.estimate import fit
from IVIMEstimatorLib.fits.priors import PRIORS
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES, ivim_signal
from IVIMEstimatorLib.training.synthetic import nrmse, synthetic_set

TRUTH = {
    "f": np.array([0.1, 0.3, 0.45]),
    "D": np.array([1.0e-3, 1.8e-3, 2.4e-3]),
    "Dstar": np.array([20e-3, 60e-3, 120e-3]),
}


def test_nlls_recovers_noise_free_parameters():
    signals = ivim_signal(ACQUIRED_BVALUES, TRUTH["f"], TRUTH["D"], TRUTH["Dstar"], 700.0)
    maps = fit(signals, ACQUIRED_BVALUES, method="nlls")
    for key in ("f", "D", "Dstar"):
        np.testing.assert_allclose(maps[key], TRUTH[key], rtol=0.02)
    np.testing.assert_allclose(maps["S0"], 700.0, rtol=1e-3)


def test_bayes_with_the_population_prior_is_close_to_its_limit():
    data = synthetic_set(PRIORS["placenta"], ACCELERATED_BVALUES, 3000, snr=30, seed=11)
    maps = fit(data.signals, ACCELERATED_BVALUES, method="bayes", prior="placenta")
    assert (
        nrmse(maps["f"], data.f) < 0.22 and nrmse(maps["D"], data.D) < 0.18 and nrmse(maps["Dstar"], data.Dstar) < 0.52
    )
    assert np.all(maps["f_sd"] > 0) and np.all(np.isfinite(maps["Dstar_sd"]))
    nlls = fit(data.signals, ACCELERATED_BVALUES, method="nlls")
    assert nrmse(maps["f"], data.f) < nrmse(nlls["f"], data.f)  # the prior helps on 6 b-values


@pytest.mark.parametrize("method", ["nlls", "bayes"])
def test_maps_keep_the_image_shape_and_ignore_the_s0_scale(method):
    data = synthetic_set(PRIORS["placenta"], ACQUIRED_BVALUES, 24, snr=50, seed=2)
    image = data.signals.reshape(2, 3, 4, 10)
    one = fit(image, ACQUIRED_BVALUES, method=method)
    scaled = fit(image * 1234.0, ACQUIRED_BVALUES, method=method)
    assert one["f"].shape == (2, 3, 4) and one["f"].dtype == np.float32
    for key in ("f", "D", "Dstar"):
        np.testing.assert_allclose(scaled[key], one[key], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(scaled["S0"], one["S0"] * 1234.0, rtol=1e-4)


def test_unsorted_and_repeated_bvalues_are_handled():
    signals = ivim_signal(ACQUIRED_BVALUES, TRUTH["f"], TRUTH["D"], TRUTH["Dstar"], 1.0)
    order = np.random.default_rng(0).permutation(10)
    shuffled = fit(signals[:, order], ACQUIRED_BVALUES[order], method="nlls")
    sorted_fit = fit(signals, ACQUIRED_BVALUES, method="nlls")
    for key in ("f", "D", "Dstar"):
        np.testing.assert_allclose(shuffled[key], sorted_fit[key], rtol=1e-6)
    repeated = np.concatenate([signals, signals[:, -1:]], axis=1)
    np.testing.assert_allclose(
        fit(repeated, np.r_[ACQUIRED_BVALUES, 500], method="nlls")["f"], sorted_fit["f"], rtol=1e-6
    )


def test_invalid_voxels_become_nan_and_inputs_stay_untouched():
    signals = ivim_signal(ACQUIRED_BVALUES, TRUTH["f"], TRUTH["D"], TRUTH["Dstar"], 1.0)
    signals[1, 4] = np.nan
    signals[2, 0] = 0.0
    before = signals.copy()
    maps = fit(signals, ACQUIRED_BVALUES, method="nlls")
    assert np.isfinite(maps["f"][0]) and np.isnan(maps["f"][1]) and np.isnan(maps["D"][2])
    np.testing.assert_array_equal(signals, before)
    masked = fit(signals, ACQUIRED_BVALUES, method="nlls", mask=np.array([True, False, False]))
    assert np.isfinite(masked["f"][0]) and np.isnan(masked["f"][1:]).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bvalues": ACQUIRED_BVALUES[:-1]}, "9 b-values given for 10 signals"),
        ({"bvalues": np.r_[ACQUIRED_BVALUES[:-1], -5]}, ">= 0"),
        ({"mask": np.zeros(3, bool)}, "mask is empty"),
        ({"mask": np.ones(4, bool)}, "mask shape"),
        ({"method": "svd"}, "unknown method"),
        ({"method": "scdnn", "bvalues": ACQUIRED_BVALUES + 10}, "no b = 0"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, message):
    signals = ivim_signal(ACQUIRED_BVALUES, TRUTH["f"], TRUTH["D"], TRUTH["Dstar"], 1.0)
    arguments = {"bvalues": ACQUIRED_BVALUES, "method": "nlls", **kwargs}
    with pytest.raises(InputError, match=message):
        fit(signals, **arguments)


def test_no_valid_voxel_and_complex_input_are_refused():
    with pytest.raises(InputError, match="no valid voxel"):
        fit(np.zeros((4, 10)), ACQUIRED_BVALUES, method="nlls")
    with pytest.raises(InputError, match="real array"):
        fit(np.ones((4, 10), complex), ACQUIRED_BVALUES, method="nlls")


@requires_shared
@pytest.mark.parametrize("name", sorted(osipi.FILES))
@pytest.mark.parametrize("method", ["nlls", "bayes"])
def test_osipi_reference_signals(name, method):
    bvalues, regions = osipi.cases(name)
    maps = fit(osipi.signals(regions), bvalues, method=method, prior="generic")
    found = osipi.failures(maps, regions, name)
    if method == "nlls" and name == "generic_DL.json":
        # The noisy pancreas signal (true D* 0.01) has its least-squares minimum at D* ~ 0.14 mm²/s: no
        # least-squares fit can meet the tolerance there (see the next test); every other region must pass.
        assert [failure.split(" ")[0] for failure in found] == ["pancreas:"], found
    else:
        assert found == []


def exhaustive_least_squares_cost(y: np.ndarray, bvalues: np.ndarray) -> float:
    """The smallest residual sum of squares of the IVIM model over a fine (D, D*) grid, amplitudes >= 0."""
    best = np.inf
    for D in np.linspace(1e-5, 5e-3, 250):
        for Dstar in np.exp(np.linspace(np.log(3e-3), np.log(0.5), 250)):
            basis = np.stack([np.exp(-bvalues * D), np.exp(-bvalues * Dstar)], axis=1)
            amplitudes, *_ = np.linalg.lstsq(basis, y, rcond=None)
            if amplitudes.min() >= 0:
                best = min(best, float(np.sum((basis @ amplitudes - y) ** 2)))
    return best


@requires_shared
def test_nlls_reaches_the_global_least_squares_minimum_on_osipi_signals():
    """The bi-exponential stage of NLLS finds the global least-squares minimum; the returned fit is that one,
    or the mono-exponential fit where BIC prefers it."""
    from IVIMEstimatorLib.fits.nlls import fit_biexponential, fit_monoexponential, prefers_monoexponential

    bvalues, regions = osipi.cases("generic_DL.json")
    y = osipi.signals(regions)
    parameters, rss_bi = fit_biexponential(y, bvalues)
    model = ivim_signal(bvalues, parameters[:, 1], parameters[:, 2], parameters[:, 3], parameters[:, 0])
    np.testing.assert_allclose(rss_bi, np.sum((model - y) ** 2, axis=1), rtol=1e-9)
    for index, region in enumerate(regions):
        assert rss_bi[index] <= exhaustive_least_squares_cost(y[index], bvalues) * 1.001, region
    maps = fit(y, bvalues, method="nlls")
    simpler = prefers_monoexponential(fit_monoexponential(y, bvalues)[1], rss_bi, len(bvalues))
    np.testing.assert_array_equal(maps["f"] == 0, simpler)
    np.testing.assert_allclose(maps["f"][~simpler], parameters[~simpler, 1], rtol=1e-6)


#: OSIPI TF2.4's 20 b-values (s/mm²) of ``generic_one.json``, whose "Stomach Contents" region is free water.
FREE_WATER_BVALUES = np.array(
    [0, 1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 250, 350, 400, 550, 700, 850, 1000, 1100, 1200.0]
)


def test_nlls_fits_free_water_mono_exponentially():
    """Free water (f = 0, D = 3e-3 mm²/s; OSIPI's stomach contents) with OSIPI's noise (Gaussian, SD 0.0005):
    the bi-exponential fit alone ends at D* ~ D with an arbitrary f (f > 0.2 for over a third of the noise
    draws; OSIPI's own two signals gave 0.26 and 0.46); with the BIC model selection nearly every draw meets
    OSIPI's tolerance |f| <= 0.2 + 0.1 x 0, and f = 0 voxels have D* = 0."""
    rng = np.random.default_rng(20261123)
    clean = ivim_signal(FREE_WATER_BVALUES, 0.0, 3e-3, 0.1)
    signals = clean[None, :] + 0.0005 * rng.standard_normal((500, FREE_WATER_BVALUES.size))
    maps = fit(signals, FREE_WATER_BVALUES, method="nlls")
    tolerance = osipi.TOLERANCES["classic"]
    f_ok = np.abs(maps["f"]) <= tolerance["atol"]["f"]
    D_ok = np.abs(maps["D"] - 3e-3) <= tolerance["atol"]["D"] + tolerance["rtol"]["D"] * 3e-3
    assert f_ok.mean() >= 0.97 and D_ok.mean() >= 0.97, (f_ok.mean(), D_ok.mean())
    mono = maps["f"] == 0
    assert mono.mean() > 0.9
    assert np.all(maps["Dstar"][mono] == 0)
    np.testing.assert_allclose(maps["D"][mono], 3e-3, rtol=0.02)
    noise_free = fit(clean, FREE_WATER_BVALUES, method="nlls")
    assert noise_free["f"] == 0 and noise_free["D"] == pytest.approx(3e-3, rel=1e-4)


def test_perfused_tissue_keeps_the_bi_exponential_fit():
    """The selection does not take perfusion away where the data show it (SNR 100, placenta-like values)."""
    rng = np.random.default_rng(5)
    clean = ivim_signal(ACQUIRED_BVALUES, TRUTH["f"], TRUTH["D"], TRUTH["Dstar"], 1.0)
    maps = fit(clean + 0.01 * rng.standard_normal(clean.shape), ACQUIRED_BVALUES, method="nlls")
    assert np.all(maps["f"] > 0)
    np.testing.assert_allclose(maps["f"], TRUTH["f"], atol=0.05)


@pytest.mark.parametrize("method", ["nlls", "bayes"])
def test_long_fits_report_progress_and_can_be_cancelled(method):
    """Chunks of voxels with a progress report after each, and a cancel check before each: a cancel asked
    during the fit stops it at the next chunk."""
    data = synthetic_set(PRIORS["placenta"], ACCELERATED_BVALUES, 700, snr=30, seed=4)
    reports = []
    whole = fit(
        data.signals,
        ACCELERATED_BVALUES,
        method=method,
        chunk_voxels=200,
        progress=lambda fraction, message: reports.append((fraction, message)),
    )
    assert [fraction for fraction, _ in reports] == pytest.approx([200 / 700, 400 / 700, 600 / 700, 1.0])
    assert reports[-1][1] == f"fitted 700 of 700 voxels ({method})"
    in_one = fit(data.signals, ACCELERATED_BVALUES, method=method)
    for key in in_one:  # Bayes works in float32: other batch sizes round differently
        np.testing.assert_allclose(whole[key], in_one[key], rtol=1e-4, atol=1e-9)
    reports.clear()
    with pytest.raises(Cancelled):
        fit(
            data.signals,
            ACCELERATED_BVALUES,
            method=method,
            chunk_voxels=200,
            progress=lambda fraction, message: reports.append(fraction),
            cancel=lambda: len(reports) >= 2,
        )
    assert len(reports) == 2  # the third chunk was never fitted
