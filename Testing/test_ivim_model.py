"""The estimator in dipy's Model/Fit shape (``IvimModel`` -> ``IvimFit``): the network is read once for many
fits, ``predict`` is the signal model, masks, the one-call ``fit`` gives the same maps, inference imports no
training code, and the module's session (``IvimSession``) on a real MRML scene."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import REPO

import FastMRICommon.model_files as model_files
from FastMRICommon.errors import InputError
from IVIMEstimatorLib.diffusion_series import new_sequence_node
from IVIMEstimatorLib.fits.estimate import fit
from IVIMEstimatorLib.fits.methods import METHODS, needs_torch
from IVIMEstimatorLib.fits.model import MAP_KEYS, IvimFit, IvimModel
from IVIMEstimatorLib.fits.network_models import MODELS_DIR
from IVIMEstimatorLib.fits.priors import PRIORS
from IVIMEstimatorLib.fits.protocol_models import MODEL_FOLDER
from IVIMEstimatorLib.map_logic import EstimateConfig, IvimModels, estimate_maps
from IVIMEstimatorLib.phantoms.phantom import LABELS, placenta_phantom
from IVIMEstimatorLib.session import IvimSession, Readiness, estimate_config
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES, ivim_signal
from IVIMEstimatorLib.training.config import TrainingConfig
from IVIMEstimatorLib.training.synthetic import synthetic_set

F = np.array([[0.1, 0.3, 0.45], [0.2, 0.05, 0.35]])
D = np.array([[1.0e-3, 1.8e-3, 2.4e-3], [1.2e-3, 0.9e-3, 2.0e-3]])
DSTAR = np.array([[20e-3, 60e-3, 120e-3], [30e-3, 15e-3, 80e-3]])


def noise_free(bvalues=ACQUIRED_BVALUES, S0=700.0) -> np.ndarray:
    """Signals of six voxels in a (2, 3) image, shape (2, 3, n_b)."""
    return ivim_signal(bvalues, F, D, DSTAR, S0)


@pytest.fixture
def counted(monkeypatch):
    """Counts of model-file reads (``torch.load``) and SHA-256 checks (``model_files.sha256_file``)."""
    import torch

    counts = {"read": 0, "hashed": 0}
    load, sha256 = torch.load, model_files.sha256_file

    def counting_load(*args, **kwargs):
        counts["read"] += 1
        return load(*args, **kwargs)

    def counting_sha256(*args, **kwargs):
        counts["hashed"] += 1
        return sha256(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    monkeypatch.setattr(model_files, "sha256_file", counting_sha256)
    return counts


def test_the_network_is_read_and_checked_once_for_several_fits(counted):
    data = synthetic_set(PRIORS["placenta"], ACCELERATED_BVALUES, 300, snr=30, seed=1)
    model = IvimModel(ACCELERATED_BVALUES, "scdnn", device="cpu")  # the shipped model for the protocol
    built = dict(counted)
    assert built["read"] >= 1 and built["hashed"] == built["read"]  # every shipped file read is checked
    fits = [model.fit(data.signals[start : start + 100], noise_sd=1 / 30) for start in (0, 100, 200)]
    assert counted == built  # three fits, no further read or check
    assert all(np.isfinite(result.f).all() for result in fits)
    by_path = IvimModel(ACCELERATED_BVALUES, "mlp", model=MODELS_DIR / "mlp_accelerated_placenta.pt", device="cpu")
    assert counted["read"] == built["read"] + 1
    for _ in range(3):
        by_path.fit(data.signals, noise_sd=1 / 30)
    assert counted["read"] == built["read"] + 1 and counted["hashed"] == built["hashed"]
    assert by_path.model_file.metadata["protocol"]["bvalues"] == list(ACCELERATED_BVALUES)


def test_the_module_keeps_its_estimators_between_estimates(counted, scene, tmp_path):
    """``IvimModels`` (what the module's logic and the demo pass to ``estimate_maps``): one network read for
    two estimates; a model file replaced on disk is read again."""
    phantom = placenta_phantom(shape=(1, 24, 24), snr=60.0, seed=3)
    sequence = new_sequence_node(scene, phantom.series, "placenta")
    models = IvimModels()
    path = tmp_path / "scdnn.pt"
    path.write_bytes((MODELS_DIR / "scdnn_acquired_placenta.pt").read_bytes())
    config = EstimateConfig(method="scdnn", model=str(path), device="cpu")
    first = estimate_maps(sequence, config, models=models)
    second = estimate_maps(sequence, config, models=models)
    assert counted["read"] == 1 and second.fit.model is first.fit.model
    np.testing.assert_array_equal(first.maps["f"], second.maps["f"])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert models.get(phantom.series.bvalues, config) is not first.fit.model and counted["read"] == 2


def test_predict_is_the_signal_model_of_the_fitted_parameters():
    signals = noise_free()
    result = IvimModel(ACQUIRED_BVALUES, "nlls").fit(signals)
    assert result.shape == (2, 3) and result.f.dtype == np.float32
    np.testing.assert_allclose(result.predict(ACQUIRED_BVALUES), signals, rtol=1e-3)  # noise-free: the data
    other = np.array([0.0, 5.0, 1000.0, 40.0])
    predicted = result.predict(other)
    assert predicted.shape == (2, 3, 4) and predicted.dtype == np.float64
    np.testing.assert_allclose(predicted, ivim_signal(other, result.f, result.D, result.Dstar, result.S0), rtol=1e-12)
    truth = IvimFit(F, D, DSTAR, np.full(F.shape, 700.0))
    np.testing.assert_array_equal(truth.predict(ACQUIRED_BVALUES), signals)
    np.testing.assert_array_equal(truth[1, 2].predict(ACQUIRED_BVALUES), signals[1, 2])  # one voxel: shape (n_b,)


def test_a_mask_selects_the_voxels_that_are_fitted():
    signals = noise_free()
    model = IvimModel(ACQUIRED_BVALUES, "nlls")
    mask = np.array([[True, False, True], [False, False, True]])
    masked = model.fit(signals, mask=mask)
    for key, values in masked.maps().items():
        assert np.isnan(values[~mask]).all() and np.isfinite(values[mask]).all(), key
    alone = model.fit(signals[mask])  # the same voxels as a list: voxels are fitted independently
    for key in ("f", "D", "Dstar", "S0"):
        np.testing.assert_array_equal(getattr(masked[mask], key), getattr(alone, key))
    assert np.isnan(masked.predict(ACQUIRED_BVALUES)[~mask]).all()
    with pytest.raises(InputError, match="mask shape"):
        model.fit(signals, mask=mask.T)
    with pytest.raises(InputError, match="mask is empty"):
        model.fit(signals, mask=np.zeros_like(mask))


@pytest.mark.parametrize("method", ["nlls", "bayes", "scdnn", "mlp", "ivimnet"])
def test_the_one_call_fit_gives_the_same_maps(method):
    data = synthetic_set(PRIORS["placenta"], ACCELERATED_BVALUES, 240, snr=30, seed=6)
    signals = (data.signals * 900.0).reshape(4, 60, 6)
    signals[0, 0, 2] = np.nan
    mask = np.ones((4, 60), bool)
    mask[3, :10] = False
    noise = 900.0 / 30  # 230 voxels: too few bright ones to measure the noise, so it is given
    maps = fit(
        signals,
        ACCELERATED_BVALUES,
        method,
        mask=mask,
        prior="placenta",
        device="cpu",
        chunk_voxels=100,
        noise_sd=noise,
    )
    model = IvimModel(ACCELERATED_BVALUES, method, prior="placenta", device="cpu")
    result = model.fit(signals, mask=mask, chunk_voxels=100, noise_sd=noise)
    assert result.model is model and list(maps) == list(result.maps())
    assert list(maps) == [key for key in MAP_KEYS if method != "nlls" or not key.endswith("_sd")]
    for key, values in result.maps().items():
        np.testing.assert_array_equal(maps[key], values)


def test_the_model_checks_its_arguments_when_built():
    for kwargs, message in (
        ({"method": "svd"}, "unknown method"),
        ({"prior": "lung"}, "unknown prior"),
        ({"device": "tpu"}, "unknown device"),
        ({"bvalues": [0, 10, -5]}, ">= 0"),
        ({"bvalues": [0, 500, 500, 0]}, "at least 3 distinct"),
        ({"method": "scdnn", "bvalues": ACQUIRED_BVALUES + 10}, "no b = 0"),
        ({"method": "scdnn", "bvalues": [0, 7, 20, 50, 150, 300, 500]}, "ivimestimator train"),
    ):
        with pytest.raises(InputError, match=message):
            IvimModel(**{"bvalues": ACQUIRED_BVALUES, "method": "nlls", **kwargs})
    model = IvimModel(ACQUIRED_BVALUES, "nlls")
    with pytest.raises(InputError, match="10 b-values given for 9 signals per voxel"):
        model.fit(noise_free()[..., :9])
    assert repr(model) == "IvimModel(bvalues=[0, 10, 20, 50, 80, 100, 150, 200, 300, 500], method='nlls')"


def test_unsorted_and_repeated_bvalues_as_acquired():
    signals = noise_free()
    order = np.r_[9, 3, 0, 1, 2, 4, 5, 6, 7, 8, 0]  # b = 0 twice
    model = IvimModel(ACQUIRED_BVALUES[order], "nlls")
    np.testing.assert_array_equal(model.bvalues, ACQUIRED_BVALUES)
    np.testing.assert_array_equal(model.acquired_bvalues, ACQUIRED_BVALUES[order])
    reordered = model.fit(signals[..., order])
    np.testing.assert_allclose(reordered.f, IvimModel(ACQUIRED_BVALUES, "nlls").fit(signals).f, rtol=1e-6)


def test_inference_imports_no_training_code():
    code = (
        "import sys, numpy as np\n"
        "import IVIMEstimatorLib.fits.estimate as estimate\n"
        "from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES as b, ivim_signal\n"
        "for method in ('scdnn', 'mlp', 'ivimnet'):\n"
        "    signals = ivim_signal(b, [0.2, 0.3], [1e-3, 2e-3], [0.03, 0.05])\n"
        "    maps = estimate.fit(signals, b, method=method, noise_sd=0.02)\n"
        "    assert np.isfinite(maps['f']).all()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('IVIMEstimatorLib.training'))\n"
        "assert not loaded, loaded\n"
    )
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO / folder) for folder in ("Common", "FastMRRecon", "IVIMEstimator")),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr


# -- the module's session, on a real MRML scene --------------------------------------------------------------


def parameters(**fields) -> SimpleNamespace:
    """The module's parameter-node fields that the session reads, with the parameter node's defaults."""
    return SimpleNamespace(
        **{
            "method": "scdnn",
            "bvalueSet": "all",
            "motionCorrection": False,
            "autoMask": True,
            "prior": "placenta",
            "device": "cpu",
            "modelPath": "",
            "bvalues": "",
            "trainingSnrLow": 8.0,
            "trainingSnrHigh": 150.0,
            **fields,
        }
    )


def test_estimate_config_reads_the_parameter_node_fields():
    config = estimate_config(parameters(method="bayes", bvalueSet="accelerated", modelPath=""))
    assert (config.method, config.bvalue_set, config.prior, config.model, config.auto_mask) == (
        "bayes",
        "accelerated",
        "placenta",
        None,
        True,
    )
    assert estimate_config(parameters(modelPath="/models/a.pt")).model == "/models/a.pt"
    with pytest.raises(InputError, match="bvalue set must be one of all, accelerated; got 'some'"):
        estimate_config(parameters(bvalueSet="some"))


def test_the_session_estimates_inspects_and_summarises_on_a_scene(scene):
    phantom = placenta_phantom(shape=(2, 32, 32), snr=60.0, seed=4)
    sequence = new_sequence_node(scene, phantom.series, "placenta")
    session = IvimSession()
    assert session.readiness(None, parameters()) == Readiness(None, False, False)
    ready = session.readiness(sequence, parameters())
    assert ready.ready and not ready.needs_model and "b-values (data)" in ready.summary
    unknown = session.readiness(sequence, parameters(bvalues="0, 7, 20, 50, 150, 300, 500, 600, 700, 800"))
    assert unknown.ready and unknown.needs_model  # no shipped network for these b-values: the retrain offer
    assert not session.readiness(sequence, parameters(bvalues="0, 7, 20", method="nlls")).ready  # 3 for 10 volumes
    with pytest.raises(InputError, match="estimate them first"):
        session.statistics()

    nodes = session.estimate(sequence, estimate_config(parameters()))
    assert nodes["D"].GetName() == "placenta scdnn D [10^-3 mm2/s]" and session.map_nodes is nodes
    placenta = np.argwhere(phantom.labels == LABELS["placenta"])
    k, j, i = placenta[len(placenta) // 2]
    from FastMRICommon.geometry import ijk_to_ras

    chart, voxel = session.inspect(ijk_to_ras(phantom.series.geometry, (i, j, k)))
    assert voxel.ijk == (i, j, k) and chart.GetNumberOfPlotSeriesNodes() == 2
    expected = session.result.fit[k, j, i]
    np.testing.assert_allclose(voxel.curve, expected.predict(voxel.curve_b) / expected.S0, rtol=1e-12)
    again, _ = session.inspect(ijk_to_ras(phantom.series.geometry, (i, j, k)))
    assert not scene.IsNodePresent(chart) and scene.IsNodePresent(again)  # one chart at a time
    assert session.statistics().GetNumberOfRows() == len(nodes)
    model = session.result.fit.model
    session.estimate(sequence, estimate_config(parameters()))
    assert session.result.fit.model is model  # the estimator is kept: the network is not read again
    session.forget()
    assert session.result is None and session.map_nodes == {}


def test_the_session_initialises_under_slicers_logic_base_class():
    """IVIMEstimatorLogic derives from ScriptedLoadableModuleLogic and IvimSession; the former's ``__init__``
    (Base/Python/slicer/ScriptedLoadableModule.py, v5.6.2 to v5.10.0) calls ``super().__init__()``, which runs
    IvimSession's. A stand-in with the same ``__init__`` shows that the session is set up through it."""

    class ScriptedLoadableModuleLogic:  # as Slicer's: no arguments passed on
        def __init__(self, parent=None):
            super().__init__()
            self.moduleName = "IVIMEstimator"

    class Logic(ScriptedLoadableModuleLogic, IvimSession):
        pass

    logic = Logic()
    assert logic.moduleName == "IVIMEstimator" and logic.result is None and isinstance(logic.models, IvimModels)


def test_only_nlls_runs_without_torch():
    assert [method for method in METHODS if not needs_torch(method)] == ["nlls"]


def test_retrain_trains_for_the_series_protocol_with_the_panel_settings_and_reuses_the_file(scene, tmp_path):
    """What the module's *Retrain* runs (``IvimSession.protocol_training``, then ``ProtocolTraining.run``): a
    network for the series' own b-values with the panel's method, prior, SNR and device, in the user's model
    folder under a name saying all that; found there the next time instead of trained again."""
    phantom = placenta_phantom(shape=(1, 48, 48), snr=60.0, seed=5)  # air enough to measure the noise
    sequence = new_sequence_node(scene, phantom.series, "placenta")
    session = IvimSession()
    typed = "0, 7, 20, 50, 150, 300, 500, 600, 700, 800"  # no shipped network fits these
    panel = parameters(method="mlp", bvalues=typed, trainingSnrLow=10.0, trainingSnrHigh=90.0, device="cpu")
    training = session.protocol_training(sequence, panel, tmp_path)
    assert training.path == tmp_path / MODEL_FOLDER / "mlp_b0-7-20-50-150-300-500-600-700-800_placenta_snr10-90.pt"
    config = training.config
    assert (config.method, config.prior, config.snr_low, config.snr_high, training.device) == (
        "mlp",
        "placenta",
        10.0,
        90.0,
        "cpu",
    )
    assert config.bvalues == (0.0, 7.0, 20.0, 50.0, 150.0, 300.0, 500.0, 600.0, 700.0, 800.0)
    assert (config.samples, config.epochs) == (TrainingConfig().samples, TrainingConfig().epochs)  # the shipped ones
    assert not training.exists
    quick = replace(training, config=replace(config, samples=1500, epochs=1, warmup_epochs=0))
    assert quick.run() == training.path and training.exists
    assert session.protocol_training(sequence, panel, tmp_path).exists  # the module uses it, no second training
    with pytest.raises(InputError, match="already exists"):
        quick.run()
    nodes = session.estimate(sequence, estimate_config(replace_fields(panel, modelPath=str(training.path))), typed)
    assert nodes["f"].GetName() == "placenta mlp f [fraction]"
    for fields, message in (
        ({"trainingSnrHigh": 3000.0}, "snr high must be between 2 and 1000; got 3000"),
        ({"trainingSnrLow": 100.0, "trainingSnrHigh": 50.0}, "lowest training SNR \\(100\\) exceeds the highest"),
        ({"method": "nlls"}, "method must be one of scdnn, mlp, ivimnet; got 'nlls'"),
        ({"device": "tpu"}, "device must be one of auto, cpu, cuda; got 'tpu'"),
        ({"bvalues": "5, 7, 20, 50, 150, 300, 500, 600, 700, 800"}, "needs a b = 0 volume"),
    ):
        with pytest.raises(InputError, match=message):
            session.protocol_training(sequence, replace_fields(panel, **fields), tmp_path)
    with pytest.raises(InputError, match="no b-values stored"):
        session.protocol_training([sequence.GetNthDataNode(n) for n in range(10)], parameters(method="mlp"), tmp_path)


def replace_fields(namespace: SimpleNamespace, **fields) -> SimpleNamespace:
    return SimpleNamespace(**{**vars(namespace), **fields})


def test_the_module_self_test_scenario_runs_on_a_real_scene(scene):
    """The scenario IVIMEstimatorTest runs in Slicer (IVIMEstimatorLib.self_test), with the module's logic as the
    module file makes it (IvimSession + a parameter node holding the module's fields)."""
    import unittest

    from IVIMEstimatorLib.self_test import run_module_scenario

    class Logic(IvimSession):
        def __init__(self):
            super().__init__()
            self.parameters = parameters(inputSeries=None, maskNode=None, statsRegion=None)

        def getParameterNode(self):
            return self.parameters

    run_module_scenario(unittest.TestCase(), Logic(), scene)
