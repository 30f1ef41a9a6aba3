"""IVIM estimation: accuracy of the classic fits, OSIPI reference signals, and bad-input handling."""

from __future__ import annotations

import numpy as np
import pytest

import osipi
from conftest import requires_shared
from FastMRICommon.errors import InputError
from IVIMEstimatorLib.estimate import fit
from IVIMEstimatorLib.priors import PRIORS
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES, ivim_signal
from IVIMEstimatorLib.synthetic import nrmse, synthetic_set

TRUTH = {"f": np.array([0.1, 0.3, 0.45]), "D": np.array([1.0e-3, 1.8e-3, 2.4e-3]), "Dstar": np.array([20e-3, 60e-3, 120e-3])}


def test_nlls_recovers_noise_free_parameters():
    signals = ivim_signal(ACQUIRED_BVALUES, TRUTH["f"], TRUTH["D"], TRUTH["Dstar"], 700.0)
    maps = fit(signals, ACQUIRED_BVALUES, method="nlls")
    for key in ("f", "D", "Dstar"):
        np.testing.assert_allclose(maps[key], TRUTH[key], rtol=0.02)
    np.testing.assert_allclose(maps["S0"], 700.0, rtol=1e-3)


def test_bayes_with_the_population_prior_is_close_to_its_limit():
    data = synthetic_set(PRIORS["placenta"], ACCELERATED_BVALUES, 3000, snr=30, seed=11)
    maps = fit(data.signals, ACCELERATED_BVALUES, method="bayes", prior="placenta")
    assert nrmse(maps["f"], data.f) < 0.22 and nrmse(maps["D"], data.D) < 0.18 and nrmse(maps["Dstar"], data.Dstar) < 0.52
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
    np.testing.assert_allclose(fit(repeated, np.r_[ACQUIRED_BVALUES, 500], method="nlls")["f"], sorted_fit["f"], rtol=1e-6)


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


@pytest.mark.parametrize("kwargs, message", [
    ({"bvalues": ACQUIRED_BVALUES[:-1]}, "9 b-values given for 10 signals"),
    ({"bvalues": np.r_[ACQUIRED_BVALUES[:-1], -5]}, ">= 0"),
    ({"mask": np.zeros(3, bool)}, "mask is empty"),
    ({"mask": np.ones(4, bool)}, "mask shape"),
    ({"method": "svd"}, "unknown method"),
    ({"method": "scdnn", "bvalues": ACQUIRED_BVALUES + 10}, "no b = 0"),
])
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
    bvalues, regions = osipi.cases("generic_DL.json")
    y = osipi.signals(regions)
    maps = fit(y, bvalues, method="nlls")
    model = ivim_signal(bvalues, maps["f"], maps["D"], maps["Dstar"], maps["S0"])
    ours = np.sum((model - y) ** 2, axis=1)
    for index, region in enumerate(regions):
        assert ours[index] <= exhaustive_least_squares_cost(y[index], bvalues) * 1.001, region
