"""``fit``: IVIM maps in one call, the convenience form of ``IvimModel(...).fit(...)`` (``fits.model``, which
documents the methods, units, input handling and errors). To fit several series with one estimator, build the
``IvimModel`` once: its network is read and checked once, not on every call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from FastMRICommon.errors import CancelCheck, ProgressCallback
from IVIMEstimatorLib.fits.model import CHUNK_VOXELS, IvimModel
from IVIMEstimatorLib.fits.network_models import MODELS_DIR, ModelSource, find_shipped_model
from IVIMEstimatorLib.fits.priors import DEFAULT_PRIOR

__all__ = ["CHUNK_VOXELS", "MODELS_DIR", "find_shipped_model", "fit"]


def fit(
    signals: Any,
    bvalues: Any,
    method: str = "scdnn",
    model: ModelSource = None,
    mask: Any = None,
    prior: str = DEFAULT_PRIOR,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    chunk_voxels: int = CHUNK_VOXELS,
    noise_sd: float | None = None,
) -> dict[str, np.ndarray]:
    """IVIM maps of ``signals`` (real array ``(..., n_b)``, any S0 scale) at ``bvalues`` (s/mm², one per signal).

    Returns float32 maps of shape ``signals.shape[:-1]`` (NaN where not fitted): ``f``, ``D`` and ``Dstar``
    (mm²/s), ``S0`` (signal units), and for ``method="bayes"`` also ``f_sd``, ``D_sd``, ``Dstar_sd`` (posterior
    SDs). The arguments are those of ``IvimModel`` and ``IvimModel.fit``; raises ``InputError`` on bad input,
    ``ModelFileError`` on a damaged model file, ``Cancelled`` when ``cancel()`` returns True.
    """
    estimator = IvimModel(bvalues, method, model, prior, device)
    return estimator.fit(signals, mask, progress, cancel, chunk_voxels, noise_sd).maps()
