"""The IVIM networks: SCDNN structure, a short real training run, and using its file through ``fit``."""

from __future__ import annotations

import numpy as np
import osipi
import pytest
import torch
from conftest import requires_shared

from FastMRICommon.errors import InputError
from FastMRICommon.model_files import load_model_file, load_shipped_model, read_manifest, sha256_file
from IVIMEstimatorLib.fits.estimate import fit
from IVIMEstimatorLib.fits.methods import METHOD_ARCHITECTURE
from IVIMEstimatorLib.fits.network_models import MODELS_DIR, find_shipped_model
from IVIMEstimatorLib.fits.networks import ScdnnNet
from IVIMEstimatorLib.fits.priors import PRIORS
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES
from IVIMEstimatorLib.training.shipped_models import SHIPPED
from IVIMEstimatorLib.training.synthetic import nrmse, synthetic_set
from IVIMEstimatorLib.training.trainer import TrainingConfig, train


def test_scdnn_outputs_stay_in_the_prior_ranges_and_f_is_a_fraction():
    torch.manual_seed(0)
    net = ScdnnNet(5, dictionary_size=40, units=2)
    params = net(torch.rand(64, 5))
    f, D, Dstar = params.T
    assert torch.all((f >= 0) & (f <= 1 + 1e-6))
    assert torch.all((D >= 0.8e-3 - 1e-9) & (D <= 2.5e-3 + 1e-9))
    assert torch.all((Dstar >= 10e-3 - 1e-9) & (Dstar <= 150e-3 + 1e-9))
    params.sum().backward()
    assert net.thresholds.grad is not None and net.thresholds.grad.abs().sum() > 0  # learnable threshold


def test_scdnn_keeps_the_module_half_method():
    # ScdnnNet stored its half dictionary size as ``self.half``, hiding nn.Module.half(): calling it raised
    # "'int' object is not callable" instead of converting the network to float16
    net = ScdnnNet(5, dictionary_size=40, units=2)
    assert net.half() is net
    assert all(parameter.dtype == torch.float16 for parameter in net.parameters())


@pytest.mark.parametrize("method", ["scdnn", "mlp", "ivimnet"])
def test_short_training_learns_and_its_file_fits_data(tmp_path, method):
    config = TrainingConfig(
        method=method,
        samples=6000,
        epochs=3,
        warmup_epochs=1,
        batch_size=64,
        learning_rate=3e-3,
        dictionary_size=40,
        units=2,
        seed=1,
    )
    model, history = train(config, out=tmp_path / "model.pt")
    assert len(history["val_loss"]) == 3 and history["val_loss"][-1] < history["val_loss"][0]
    loaded = load_model_file(tmp_path / "model.pt")
    assert loaded.metadata["protocol"]["bvalues"] == list(map(float, ACCELERATED_BVALUES))
    data = synthetic_set(PRIORS["placenta"], ACCELERATED_BVALUES, 2000, snr=30, seed=99)
    maps = fit(data.signals * 500.0, ACCELERATED_BVALUES, method=method, model=tmp_path / "model.pt", device="cpu")
    baseline = np.sqrt(np.mean((data.f - data.f.mean()) ** 2))  # always guessing the mean
    assert np.sqrt(np.mean((maps["f"] - data.f) ** 2)) < baseline
    with pytest.raises(InputError, match="train a model for this protocol"):
        fit(np.ones((2, 10)), ACQUIRED_BVALUES, method=method, model=tmp_path / "model.pt")


def test_missing_shipped_model_points_to_train():
    with pytest.raises(InputError, match="ivimestimator train --method scdnn --bvals 0,7,20,50,150,300,500"):
        fit(np.ones((2, 7)), [0, 7, 20, 50, 150, 300, 500], method="scdnn")


# --- the shipped models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda spec: spec.file)
def test_each_shipped_model_is_listed_checked_and_described(spec):
    entry = read_manifest(MODELS_DIR)[spec.file]
    assert sha256_file(MODELS_DIR / spec.file) == entry.sha256
    card = (MODELS_DIR / entry.card).read_text()
    assert entry.sha256 in card and "Held-out test" in card and "Training data" in card
    model = load_shipped_model(MODELS_DIR, spec.file)
    assert model.architecture == METHOD_ARCHITECTURE[spec.method]
    assert model.metadata["protocol"]["bvalues"] == list(spec.bvalues)
    training = model.metadata["training"]
    assert training["prior"] == spec.prior
    assert (training["snr_low"], training["snr_high"]) == (TrainingConfig.snr_low, TrainingConfig.snr_high)
    assert model.config["noise_input"] and model.config["uncertainty"]  # told the SNR, gives SD maps


def test_fit_picks_the_shipped_model_matching_the_bvalues():
    data = synthetic_set(PRIORS["placenta"], ACQUIRED_BVALUES, 50, snr=30, seed=3)
    chosen = find_shipped_model("scdnn", ACQUIRED_BVALUES)
    assert chosen.metadata["protocol"]["bvalues"] == list(map(float, ACQUIRED_BVALUES))
    np.testing.assert_array_equal(  # 50 voxels: too few to measure the noise, so it is given
        fit(data.signals, ACQUIRED_BVALUES, method="scdnn", noise_sd=1 / 30)["f"],
        fit(data.signals, ACQUIRED_BVALUES, method="scdnn", model=chosen, noise_sd=1 / 30)["f"],
    )


@pytest.mark.parametrize("method", ["scdnn", "mlp"])
def test_shipped_supervised_networks_are_near_the_bayes_reference(method):
    """On fresh held-out signals of the training population, the shipped accelerated-protocol networks stay
    within 15% of the Bayes posterior mean (the benchmark measures the 10% target on 20,000 signals)."""
    data = synthetic_set(PRIORS["placenta"], ACCELERATED_BVALUES, 4000, snr=30, seed=77)
    truth = {"f": data.f, "D": data.D, "Dstar": data.Dstar}
    network = fit(data.signals, ACCELERATED_BVALUES, method=method, device="cpu")
    reference = fit(data.signals, ACCELERATED_BVALUES, method="bayes", prior="placenta", device="cpu")
    for key, value in truth.items():
        assert nrmse(network[key], value) <= 1.15 * nrmse(reference[key], value), key


IVIMNET_OSIPI_MISS = pytest.mark.xfail(
    strict=True,
    reason="known limitation: the unsupervised IVIM-NET trained over SNR 8-150 misses OSIPI's deep-learning "
    "tolerance in 2 of 14 regions (stomach wall f 0.57 vs 0.30; pancreas D* 0.125 vs 0.010 mm²/s); SCDNN and MLP "
    "meet it",
)


@requires_shared
@pytest.mark.parametrize("method", ["scdnn", "mlp", pytest.param("ivimnet", marks=IVIMNET_OSIPI_MISS)])
def test_shipped_networks_meet_osipi_tolerances_on_its_deep_learning_signals(method):
    bvalues, regions = osipi.cases("generic_DL.json")
    noise = {region["noise"] for region in regions.values()}
    assert noise == {0.04}  # the file states its noise SD (S0 = 1); 14 voxels are too few to measure it
    maps = fit(osipi.signals(regions), bvalues, method=method, device="cpu", noise_sd=0.04)
    assert osipi.failures(maps, regions, "generic_DL.json") == []
