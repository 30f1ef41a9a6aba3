"""Networks for the data's own protocol: is there a shipped model for these b-values, and if not, train one
on synthetic signals (what the module's *Retrain* offer calls).

Training uses ``training.train`` with the chosen prior (``priors.PRIORS``) and SNR; the model goes to a file
the user keeps (by default in the user's model folder) and is used like any model file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback

from IVIMEstimatorLib.fits.methods import METHOD_ARCHITECTURE


def has_shipped_model(method: str, bvalues: np.ndarray) -> bool:
    """True when ``method`` is a classic fit, or a shipped network exists for exactly these b-values (s/mm²)."""
    from IVIMEstimatorLib.fits.network_models import find_shipped_model  # imports torch

    if method not in METHOD_ARCHITECTURE:
        return True
    try:
        find_shipped_model(method, np.sort(np.unique(np.asarray(bvalues, float))))
    except InputError:
        return False
    return True


def protocol_model_name(method: str, bvalues: np.ndarray, prior: str, snr: float) -> str:
    """A file name that says what the model is for, e.g. ``scdnn_b0-10-20-500_placenta_snr30.pt``."""
    values = "-".join(f"{b:g}" for b in np.sort(np.unique(np.asarray(bvalues, float))))
    return f"{method}_b{values}_{prior}_snr{snr:g}.pt"


def train_for_protocol(bvalues: np.ndarray, out: str | os.PathLike, method: str = "scdnn", prior: str = "placenta",
                       snr: float = 30.0, samples: Optional[int] = None, epochs: Optional[int] = None,
                       device: str = "cpu",
                       progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> Path:
    """Train ``method`` for the b-values (s/mm², the data's unique values; b = 0 required) on synthetic
    signals from ``prior`` at ``snr``; write it to ``out`` (refused if it exists) and return the path.
    Cancelling writes nothing. ``samples`` and ``epochs`` (None) default to ``TrainingConfig``'s, those of
    the shipped models."""
    from IVIMEstimatorLib.training.trainer import TrainingConfig, train  # imports torch

    out = Path(out)
    if out.exists():
        raise InputError(f"{out} already exists: choose another file name")
    b = np.sort(np.unique(np.asarray(bvalues, float)))
    if b.size == 0 or b[0] != 0:
        raise InputError("training needs a b = 0 volume (the networks normalise by it)")
    defaults = TrainingConfig()
    epochs = defaults.epochs if epochs is None else int(epochs)
    config = TrainingConfig(method=method, bvalues=tuple(float(v) for v in b), prior=prior, snr=float(snr),
                            samples=defaults.samples if samples is None else int(samples), epochs=epochs,
                            warmup_epochs=min(defaults.warmup_epochs, max(epochs - 1, 0)))
    out.parent.mkdir(parents=True, exist_ok=True)
    train(config, out, device=device, progress=progress, cancel=cancel)
    return out
