"""``fit``: IVIM maps from signals by any of the five methods, with input checks and model selection.

Handling of imperfect input (documented and tested):
- b-values are sorted (signals permuted with them); signals repeated at the same b-value are averaged.
- A voxel with a non-finite signal, or with S(b=0) <= 0, gets NaN in every map; so do voxels outside ``mask``.
- Errors (InputError): b-value count != signal count, negative or non-finite b-values, an empty mask, no
  valid voxel, no b = 0 for a method that normalises by it (the networks), a network whose protocol does not
  match the data's b-values (the message names ``ivimestimator train``).

Long fits: voxels are fitted in chunks of ``CHUNK_VOXELS`` (0.2 s for NLLS, 0.7 s for Bayes at the speeds of
docs/benchmarks/ivim.md); progress is reported and cancellation honoured between chunks, so a GUI that
processes its events in the progress callback keeps a working *Cancel*.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

from FastMRICommon.device import select_device
from FastMRICommon.errors import CancelCheck, InputError, ModelFileError, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.model_files import ModelFile, load_model_file, load_shipped_model, read_manifest

from IVIMEstimatorLib.fits.bayes import BayesConfig, fit_bayes, make_grid
from IVIMEstimatorLib.fits.methods import METHOD_ARCHITECTURE, METHODS
from IVIMEstimatorLib.fits.networks import REGISTRY
from IVIMEstimatorLib.fits.nlls import NllsConfig, fit_nlls
from IVIMEstimatorLib.fits.priors import get_prior
from IVIMEstimatorLib.training.trainer import normalised_inputs

MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "IVIMEstimator"
ModelSource = Union[None, str, os.PathLike, ModelFile]


def prepare_bvalues(signals: np.ndarray, bvalues: Any) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique b-values (s/mm²) and the signals ``[n, n_unique]`` averaged per b-value."""
    b = np.asarray(bvalues, dtype=float).ravel()
    if b.size != signals.shape[-1]:
        raise InputError(f"{b.size} b-values given for {signals.shape[-1]} signals per voxel")
    if not np.all(np.isfinite(b)) or np.any(b < 0):
        raise InputError("b-values must be finite and >= 0 s/mm²")
    unique, inverse = np.unique(b, return_inverse=True)
    if unique.size < 3:
        raise InputError(f"IVIM needs at least 3 distinct b-values, got {unique.size}")
    if unique.size == b.size:  # no repeats: a column reorder, no averaging
        return unique, signals[..., np.argsort(b, kind="stable")]
    averaged = np.zeros(signals.shape[:-1] + (unique.size,))
    np.add.at(averaged.T, inverse, signals.T)  # sum per unique b
    return unique, averaged / np.bincount(inverse)


def _format_bvalues(bvalues: np.ndarray) -> str:
    return ",".join(f"{b:g}" for b in bvalues)


def _trained_bvalues(model: ModelFile) -> np.ndarray:
    """The b-values (s/mm²) a network was trained for, from its metadata."""
    return np.asarray(model.metadata.get("protocol", {}).get("bvalues", []), float)


def _fits_protocol(model: ModelFile, bvalues: np.ndarray) -> bool:
    trained = _trained_bvalues(model)
    return trained.shape == bvalues.shape and bool(np.allclose(trained, bvalues))


def find_shipped_model(method: str, bvalues: np.ndarray, models_dir: Path = MODELS_DIR) -> ModelFile:
    """The shipped model of ``method`` trained for exactly these b-values (s/mm²)."""
    architecture = METHOD_ARCHITECTURE[method]
    for name in sorted(read_manifest(models_dir)):
        model = load_shipped_model(models_dir, name)
        if model.architecture == architecture and _fits_protocol(model, bvalues):
            return model
    values = _format_bvalues(bvalues)
    raise InputError(f"no shipped {method} model for b-values {values} s/mm²; train one with "
                     f"`ivimestimator train --method {method} --bvals {values} --out MODEL.pt` and pass it as the model")


def _resolve_model(method: str, model: ModelSource, bvalues: np.ndarray) -> ModelFile:
    if model is None:
        return find_shipped_model(method, bvalues)
    loaded = model if isinstance(model, ModelFile) else load_model_file(model)
    if loaded.architecture != METHOD_ARCHITECTURE[method]:
        raise ModelFileError(f"the model is a {loaded.architecture}, not a {method} network")
    if not _fits_protocol(loaded, bvalues):
        raise InputError(f"the model was trained for b-values {_format_bvalues(_trained_bvalues(loaded))} s/mm², the "
                         f"data have {_format_bvalues(bvalues)}: train a model for this protocol "
                         f"(`ivimestimator train --method {method} --bvals ...`)")
    return loaded


#: Voxels fitted between two progress reports / cancel checks.
CHUNK_VOXELS = 2048
#: A chunk's fit: (signals ``[n, n_b]`` as measured, the same divided by S(b=0)) -> maps in fit units, with
#: S0 relative to S(b=0).
ChunkFit = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def _chunk_fit(method: str, model: ModelSource, prior: str, device: str, b: np.ndarray) -> ChunkFit:
    """The fit of one chunk of voxels by ``method``; what every chunk shares (Bayes grid, network) is made
    here, once."""
    if method == "nlls":
        def fit_chunk(signals: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
            estimate = fit_nlls(y, b, NllsConfig())
            return {"S0": estimate[:, 0], "f": estimate[:, 1], "D": estimate[:, 2], "Dstar": estimate[:, 3]}
    elif method == "bayes":
        grid, target = make_grid(get_prior(prior), b, BayesConfig()), select_device(device)

        def fit_chunk(signals: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
            return fit_bayes(y, grid, device=target)
    else:
        import torch

        target = select_device(device)
        network = _resolve_model(method, model, b).build(REGISTRY).to(target)

        def fit_chunk(signals: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
            with torch.inference_mode():
                estimate = network(torch.from_numpy(normalised_inputs(signals, b)).to(target)).cpu().numpy()
            estimate = estimate.astype(np.float64)
            return {"f": estimate[:, 0], "D": estimate[:, 1], "Dstar": estimate[:, 2], "S0": np.ones(len(y))}
    return fit_chunk


def fit(signals: Any, bvalues: Any, method: str = "scdnn", model: ModelSource = None, mask: Any = None,
        prior: str = "generic", device: str = "auto", progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelCheck] = None, chunk_voxels: int = CHUNK_VOXELS) -> dict[str, np.ndarray]:
    """IVIM maps from ``signals`` (shape ``(..., n_b)``, any S0 scale) at ``bvalues`` (s/mm²).

    Returns float32 maps of shape ``signals.shape[:-1]``: ``f``, ``D`` and ``Dstar`` (mm²/s), ``S0`` (signal
    units), and for ``method="bayes"`` also ``f_sd``, ``D_sd``, ``Dstar_sd`` (posterior SDs). ``model``: for the
    networks, None (the shipped model matching the b-values), a model file path, or a loaded ModelFile.
    ``prior``: the Bayes method's prior (see ``priors.PRIORS``). ``mask``: boolean, shape ``signals.shape[:-1]``.
    ``progress(fraction, message)`` is called after every ``chunk_voxels`` fitted voxels and ``cancel()``
    polled before each chunk (True raises ``Cancelled``; nothing is returned).
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if chunk_voxels < 1:
        raise InputError(f"chunk_voxels must be >= 1, got {chunk_voxels}")
    signals = np.asarray(signals)
    if np.iscomplexobj(signals) or signals.ndim < 1 or signals.dtype.kind not in "fiu":
        raise InputError("signals must be a real array of shape (..., n_b)")
    spatial = signals.shape[:-1]
    b, flat = prepare_bvalues(signals.reshape(-1, signals.shape[-1]).astype(np.float64), bvalues)
    selected = np.ones(flat.shape[0], dtype=bool)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != spatial:
            raise InputError(f"mask shape {mask.shape} differs from the image shape {spatial}")
        selected = mask.reshape(-1).astype(bool)
        if not selected.any():
            raise InputError("the mask is empty")
    needs_b0 = method in METHOD_ARCHITECTURE
    if b[0] != 0 and needs_b0:
        raise InputError(f"method {method} normalises by the b = 0 signal, but the data have no b = 0")
    reference = flat[:, b == b[0]].mean(axis=1)  # S(b=0), or S at the lowest b for nlls/bayes without b = 0
    valid = selected & np.all(np.isfinite(flat), axis=1) & (reference > 0)
    if not valid.any():
        raise InputError("no valid voxel: every selected voxel has a non-finite signal or S(b=0) <= 0")
    measured = flat[valid]
    y = measured / reference[valid, None]
    fit_chunk = _chunk_fit(method, model, prior, device, b)
    parts, total = [], len(y)
    for start in range(0, total, chunk_voxels):
        raise_if_cancelled(cancel)
        stop = min(start + chunk_voxels, total)
        parts.append(fit_chunk(measured[start:stop], y[start:stop]))
        report(progress, stop / total, f"fitted {stop:,} of {total:,} voxels ({method})")
    maps = {}
    for key in parts[0]:
        full = np.full(flat.shape[0], np.nan, dtype=np.float32)
        full[valid] = np.concatenate([part[key] for part in parts]) * (reference[valid] if key == "S0" else 1.0)
        maps[key] = full.reshape(spatial)
    return maps
