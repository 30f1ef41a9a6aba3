"""The IVIM networks: SCDNN structure, a short real training run, and using its file through ``fit``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from FastMRICommon.errors import InputError
from FastMRICommon.model_files import load_model_file
from IVIMEstimatorLib.estimate import fit
from IVIMEstimatorLib.networks import ScdnnNet
from IVIMEstimatorLib.priors import PRIORS
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES
from IVIMEstimatorLib.synthetic import synthetic_set
from IVIMEstimatorLib.training import TrainingConfig, train


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


@pytest.mark.parametrize("method", ["scdnn", "mlp", "ivimnet"])
def test_short_training_learns_and_its_file_fits_data(tmp_path, method):
    config = TrainingConfig(method=method, samples=6000, epochs=3, warmup_epochs=1, batch_size=64,
                            learning_rate=3e-3, dictionary_size=40, units=2, seed=1)
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
