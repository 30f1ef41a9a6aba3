"""What inference with an IVIM network needs, and nothing of training: finding the model file for a protocol
(shipped, or given by the user), checking that it fits the data's b-values, building its network, and the
networks' input normalisation.

A network is trained for one protocol: its model file records the b-values (s/mm²) in
``metadata["protocol"]["bvalues"]``, and data with other b-values are refused (``InputError`` naming
``ivimestimator train``, which makes a model for them). Importing this module does not import torch; the
functions that read or build a network do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from FastMRICommon.errors import InputError, ModelFileError
from FastMRICommon.model_files import ModelFile, load_model_file, load_shipped_model, read_manifest
from IVIMEstimatorLib.fits.methods import METHOD_ARCHITECTURE

#: The shipped networks and their manifest (SHA-256 of each file).
MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "IVIMEstimator"
#: A network's model: None (the shipped one for the b-values), a model file path, or a loaded ModelFile.
ModelSource = Union[None, str, os.PathLike, ModelFile]  # noqa: UP007 (a runtime alias: | fails on os.PathLike)


def format_bvalues(bvalues: np.ndarray) -> str:
    """``0,20,50`` (s/mm²), as ``ivimestimator --bvals`` takes them."""
    return ",".join(f"{b:g}" for b in bvalues)


def trained_bvalues(model: ModelFile) -> np.ndarray:
    """The b-values (s/mm²) a network was trained for, from its metadata (empty when it records none)."""
    return np.asarray(model.metadata.get("protocol", {}).get("bvalues", []), float)


def fits_protocol(model: ModelFile, bvalues: np.ndarray) -> bool:
    """True when ``model`` was trained for exactly ``bvalues`` (sorted unique, s/mm²)."""
    trained = trained_bvalues(model)
    return trained.shape == bvalues.shape and bool(np.allclose(trained, bvalues))


def find_shipped_model(method: str, bvalues: np.ndarray, models_dir: Path = MODELS_DIR) -> ModelFile:
    """The shipped model of ``method`` trained for exactly these b-values (sorted unique, s/mm²), loaded and
    checked against its manifest SHA-256. Raises ``InputError`` (naming ``ivimestimator train``) when there is
    none, ``ModelFileError`` when a shipped file is damaged."""
    architecture = METHOD_ARCHITECTURE[method]
    for name in sorted(read_manifest(models_dir)):
        model = load_shipped_model(models_dir, name)
        if model.architecture == architecture and fits_protocol(model, bvalues):
            return model
    values = format_bvalues(bvalues)
    raise InputError(
        f"no shipped {method} model for b-values {values} s/mm²; train one with `ivimestimator train "
        f"--method {method} --bvals {values} --out MODEL.pt` and pass it as the model"
    )


def resolve_model(method: str, model: ModelSource, bvalues: np.ndarray) -> ModelFile:
    """The model file of network ``method`` for ``bvalues`` (sorted unique, s/mm²): the shipped one when
    ``model`` is None, else ``model`` (a path is read once here). Raises ``ModelFileError`` for a file of
    another architecture and ``InputError`` for one trained for other b-values."""
    if model is None:
        return find_shipped_model(method, bvalues)
    loaded = model if isinstance(model, ModelFile) else load_model_file(model)
    if loaded.architecture != METHOD_ARCHITECTURE[method]:
        raise ModelFileError(f"the model is a {loaded.architecture}, not a {method} network")
    if not fits_protocol(loaded, bvalues):
        raise InputError(
            f"the model was trained for b-values {format_bvalues(trained_bvalues(loaded))} s/mm², the "
            f"data have {format_bvalues(bvalues)}: train a model for this protocol "
            f"(`ivimestimator train --method {method} --bvals ...`)"
        )
    return loaded


def load_network(model: ModelFile, device):
    """The network of ``model`` with its weights, in eval mode on ``device`` (a torch device)."""
    from IVIMEstimatorLib.fits.networks import REGISTRY  # imports torch

    return model.build(REGISTRY).to(device)


#: The SNRs the SNR column can express (below 1 a voxel is noise; above 1000 the noise is negligible).
SNR_LIMITS = (1.0, 1000.0)


def snr_feature(snr: np.ndarray) -> np.ndarray:
    """The SNR column of a noise-aware network's input: log10 of the voxel's SNR (S_0 / noise SD), clipped to
    ``SNR_LIMITS`` (0 to 3)."""
    return np.log10(np.clip(snr, *SNR_LIMITS))


def inverse_snr(feature):
    """1 / SNR from the SNR column (numpy or torch)."""
    return 10.0 ** (-feature)


def normalised_inputs(
    signals: np.ndarray, bvalues: np.ndarray, noise_sd: float | np.ndarray | None = None
) -> np.ndarray:
    """The networks' input float32: y = S_b / S_0 for the b > 0 columns of ``signals [n, n_b]`` at ``bvalues``
    (s/mm²), S_0 the mean of the b = 0 columns (there must be one); with ``noise_sd`` (signal units, one for all
    rows or one per row) a last column, ``snr_feature(S_0 / noise_sd)``, for the noise-aware networks."""
    zero = bvalues == 0
    s0 = signals[:, zero].mean(axis=1, keepdims=True)
    y = signals[:, ~zero] / s0
    if noise_sd is not None:
        noise = np.reshape(np.asarray(noise_sd, dtype=float), (-1, 1))
        y = np.concatenate([y, snr_feature(s0 / noise)], axis=1)
    return y.astype(np.float32)


def is_noise_aware(model: ModelFile) -> bool:
    """True when the network of ``model`` takes the SNR column (trained over a range of SNRs)."""
    return bool(model.config.get("noise_input", False))


def has_uncertainty(model: ModelFile) -> bool:
    """True when the network of ``model`` gives SDs of f, D and D* (its SD head)."""
    return bool(model.config.get("uncertainty", False))
