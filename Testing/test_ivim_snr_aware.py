"""Issue 25: networks trained over a range of SNRs and told each voxel's SNR, with SD maps; the fit's handling of
the noise level (needed, measured, outside the trained range) and of a b = 0 volume scaled unlike the others."""

from __future__ import annotations

import numpy as np
import pytest

from FastMRICommon.errors import InputError
from IVIMEstimatorLib.fits.model import IvimModel
from IVIMEstimatorLib.fits.network_models import SNR_LIMITS, normalised_inputs, snr_feature
from IVIMEstimatorLib.fits.priors import PRIORS
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES
from IVIMEstimatorLib.training.synthetic import synthetic_set

BVALUES = np.asarray(ACCELERATED_BVALUES, float)


def test_a_training_set_over_an_snr_range_draws_each_signals_snr_log_uniformly():
    data = synthetic_set(PRIORS["placenta"], BVALUES, 20000, (8.0, 150.0), seed=3)
    snr = 1.0 / data.noise_sd
    assert data.snr == (8.0, 150.0) and snr.min() >= 8.0 - 1e-3 and snr.max() <= 150.0 + 1e-2
    assert np.median(np.log(snr)) == pytest.approx(np.log(np.sqrt(8.0 * 150.0)), abs=0.05)
    # the noise each signal got is its own: b = 500 s/mm² residuals scale with its SD
    clean = synthetic_set(PRIORS["placenta"], BVALUES, 20000, 1e9, seed=3).signals  # same draws, no noise
    residual = data.signals[:, -1] - clean[:, -1]
    low, high = snr < 15, snr > 80
    assert np.std(residual[low]) > 4 * np.std(residual[high])
    one = synthetic_set(PRIORS["placenta"], BVALUES, 10, 30.0, seed=3)
    assert one.snr == 30.0 and np.allclose(one.noise_sd, 1 / 30)


def test_the_snr_column_is_log10_of_each_voxels_snr():
    signals = np.array([[200.0, 150, 120, 90, 70, 50], [20.0, 15, 12, 9, 7, 5]])
    plain = normalised_inputs(signals, BVALUES)
    told = normalised_inputs(signals, BVALUES, 2.0)
    np.testing.assert_allclose(told[:, :5], plain)
    np.testing.assert_allclose(told[:, 5], [2.0, 1.0])  # S0 / sigma = 100 and 10
    per_row = normalised_inputs(signals, BVALUES, np.array([0.1, 40.0]))
    np.testing.assert_allclose(per_row[:, 5], np.log10([1000.0, SNR_LIMITS[0]]))  # 2000 and 0.5, clipped
    assert snr_feature(np.array([5e4]))[0] == pytest.approx(3.0)


def test_the_loss_weighs_each_signal_by_its_snr_to_the_power_set():
    from IVIMEstimatorLib.training.trainer import TrainingConfig, snr_loss_weights

    noise_sd = np.array([1 / 10, 1 / 20, 1 / 40, 1 / 80])
    weights = snr_loss_weights(TrainingConfig(snr_loss_power=1.0), noise_sd)
    assert weights.mean() == pytest.approx(1.0) and np.allclose(weights[1:] / weights[:-1], 2.0)
    squared = snr_loss_weights(TrainingConfig(snr_loss_power=2.0), noise_sd)
    assert np.allclose(squared[1:] / squared[:-1], 4.0)
    assert np.allclose(snr_loss_weights(TrainingConfig(snr_loss_power=0.0), noise_sd), 1.0)
    assert np.allclose(snr_loss_weights(TrainingConfig(snr_low=30.0, snr_high=30.0), noise_sd), 1.0)  # one SNR


def test_weighting_the_loss_by_snr_moves_accuracy_from_low_to_high_snr():
    """The same small MLP trained unweighted and with the loss weighted by SNR ** 3: on held-out signals the
    weighted one is worse at SNR 10 and better at SNR 100 (the weights reach the loss, in the intended direction)."""
    from IVIMEstimatorLib.training.synthetic import nrmse
    from IVIMEstimatorLib.training.trainer import TrainingConfig, train

    held_out = {snr: synthetic_set(PRIORS["placenta"], BVALUES, 4000, snr, seed=9) for snr in (10.0, 100.0)}
    errors = {}
    for power in (0.0, 3.0):
        config = TrainingConfig(
            method="mlp", samples=30000, epochs=4, warmup_epochs=1, learning_rate=3e-3, seed=2, snr_loss_power=power
        )
        model, _ = train(config, device="cpu")
        for snr, data in held_out.items():
            fitted = IvimModel(BVALUES, "mlp", model=model, device="cpu").fit(data.signals, noise_sd=1 / snr)
            errors[power, snr] = [nrmse(getattr(fitted, key), getattr(data, key)) for key in ("f", "D", "Dstar")]
    assert all(w > 1.2 * u for w, u in zip(errors[3.0, 10.0], errors[0.0, 10.0])), errors
    assert sum(errors[3.0, 100.0]) < 0.97 * sum(errors[0.0, 100.0]), errors


@pytest.fixture(scope="module")
def noise_aware_model(tmp_path_factory):
    """A small MLP trained over SNR 8-150 (quick, not the shipped quality)."""
    from IVIMEstimatorLib.training.trainer import TrainingConfig, train

    path = tmp_path_factory.mktemp("snr") / "mlp.pt"
    config = TrainingConfig(
        method="mlp", samples=30000, epochs=4, warmup_epochs=1, batch_size=128, learning_rate=3e-3, seed=2
    )
    model, history = train(config, out=path, device="cpu")
    return path, model, history


def test_a_network_trained_over_an_snr_range_is_told_the_snr_and_gives_sd_maps(noise_aware_model):
    path, model, history = noise_aware_model
    assert model.config["noise_input"] and model.config["uncertainty"]
    assert (model.metadata["training"]["snr_low"], model.metadata["training"]["snr_high"]) == (8.0, 150.0)
    assert len(history["val_coverage"]) == 4 and all(0.4 < share < 0.95 for share in history["val_coverage"][-1])
    estimator = IvimModel(BVALUES, "mlp", path, device="cpu")
    assert estimator.noise_aware and estimator.uncertainty
    data = synthetic_set(PRIORS["placenta"], BVALUES, 3000, 20.0, seed=8)
    fitted = estimator.fit(data.signals * 400.0, noise_sd=400.0 / 20.0)
    for key in ("f", "D", "Dstar"):
        sd = getattr(fitted, f"{key}_sd")
        assert sd is not None and np.all(np.isfinite(sd)) and np.all(sd > 0), key
    noisier = estimator.fit(data.signals * 400.0, noise_sd=4 * 400.0 / 20.0)  # told SNR 5 instead of 20
    assert np.mean(noisier.f_sd) > 1.3 * np.mean(fitted.f_sd)  # the SD map follows the SNR it is told
    assert not np.allclose(noisier.f, fitted.f)  # and so does the estimate
    measured = estimator.fit(data.signals * 400.0)  # noise measured from the residuals: about the same maps
    assert measured.noise.source == "residuals" and measured.noise.sd / 20.0 == pytest.approx(1.0, rel=0.15)
    assert np.sqrt(np.mean((measured.f - fitted.f) ** 2)) < 0.03


def test_a_noise_aware_network_needs_a_noise_level_it_can_get(noise_aware_model):
    path, _, _ = noise_aware_model
    estimator = IvimModel(BVALUES, "mlp", path, device="cpu")
    few = synthetic_set(PRIORS["placenta"], BVALUES, 40, 30.0, seed=1).signals  # too few voxels to measure
    with pytest.raises(InputError, match="mlp network needs the noise SD of the signals: too few voxels"):
        estimator.fit(few)
    assert estimator.fit(few, noise_sd=1 / 30).f.shape == (40,)


def test_an_snr_outside_the_trained_range_is_fitted_with_a_warning(noise_aware_model, caplog):
    path, _, _ = noise_aware_model
    estimator = IvimModel(BVALUES, "mlp", path, device="cpu")
    signals = synthetic_set(PRIORS["placenta"], BVALUES, 500, 400.0, seed=5).signals
    inside = estimator.fit(signals, noise_sd=1 / 60)
    assert inside.warnings == ()
    outside = estimator.fit(signals, noise_sd=1 / 400)
    assert (
        len(outside.warnings) == 1
        and "outside the SNRs the mlp network was trained on (8-150)" in (outside.warnings[0])
    )
    assert "outside the SNRs" in caplog.text and np.all(np.isfinite(outside.f))
    # classic fits have no trained range
    assert IvimModel(BVALUES, "nlls").fit(signals[:50], noise_sd=1 / 400).warnings == ()


def test_a_b0_volume_scaled_unlike_the_others_is_refused():
    signals = synthetic_set(PRIORS["placenta"], BVALUES, 300, 50.0, seed=4).signals
    IvimModel(BVALUES, "nlls").fit(signals)  # as acquired: fine
    scaled = signals.copy()
    scaled[:, 0] *= 0.6  # b = 0 written with another scale factor
    with pytest.raises(InputError, match="b = 0 volume seems scaled differently"):
        IvimModel(BVALUES, "nlls").fit(scaled)
    assert np.array_equal(scaled[:, 1:], signals[:, 1:])  # the input is not modified


# --- the shipped networks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["scdnn", "mlp", "ivimnet"])
def test_the_shipped_sd_maps_are_calibrated_at_low_and_high_snr(method):
    """On fresh held-out signals the truth lies within +-1 SD of the shipped accelerated-protocol network's
    estimate in about 68% of voxels (issue's band: 60-76%; the benchmark measures it on 20,000 signals per SNR
    from 10 to 100), with the noise measured from the residuals."""
    for snr, seed in ((12.0, 31), (80.0, 32)):
        data = synthetic_set(PRIORS["placenta"], BVALUES, 4000, snr, seed=seed)
        fitted = IvimModel(BVALUES, method, device="cpu").fit(data.signals * 300.0)
        for key in ("f", "D", "Dstar"):
            within = np.mean(np.abs(getattr(fitted, key) - getattr(data, key)) <= getattr(fitted, f"{key}_sd"))
            assert 0.57 <= within <= 0.79, (snr, key, within)


def test_the_fit_command_writes_the_snr_warning_beside_the_maps(tmp_path, run_cli):
    from IVIMEstimatorLib.diffusion_series import write_series_array
    from IVIMEstimatorLib.phantoms.phantom import placenta_phantom

    series = placenta_phantom(shape=(2, 48, 48), snr=600.0, seed=7).series  # above the trained 8-150
    path = write_series_array(series, tmp_path / "dwi.nii.gz")
    result = run_cli("ivimestimator", "fit", str(path), str(tmp_path / "maps"), "--method", "scdnn")
    assert result.returncode == 0, result.stderr
    assert "outside the SNRs the scdnn network was trained on (8-150)" in result.stderr
    warning = (tmp_path / "maps" / "warnings.txt").read_text()
    assert "outside the SNRs" in warning and (tmp_path / "maps" / "f_sd.nrrd").is_file()
    result = run_cli("ivimestimator", "fit", str(path), str(tmp_path / "maps"), "--method", "nlls", "--overwrite")
    assert result.returncode == 0 and not (tmp_path / "maps" / "warnings.txt").exists()  # not left from before
