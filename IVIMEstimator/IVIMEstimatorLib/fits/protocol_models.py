"""Networks for the data's own protocol: is there a shipped model for these b-values, and if not, train one
on synthetic signals (what the module's *Retrain* offer calls).

``protocol_training`` says what would be trained (a ``ProtocolTraining``: ``training.config.TrainingConfig``
with the chosen method, prior and SNR range; the device; the model file, named after all of them, in the user's model
folder) and ``ProtocolTraining.run`` trains it (``training.trainer.train``). The model is a file the user keeps
and is used like any model file; a network trained before for the same protocol and settings is found by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from FastMRICommon.device import DEVICE_CHOICES
from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback
from IVIMEstimatorLib.fits.methods import METHOD_ARCHITECTURE
from IVIMEstimatorLib.training.config import TrainingConfig

#: Folder, inside the folder given to ``protocol_training`` (the module gives Slicer's user settings folder), of
#: the networks trained for protocols.
MODEL_FOLDER = "IVIMEstimatorModels"


def has_shipped_model(method: str, bvalues: ArrayLike) -> bool:
    """True when ``method`` is a classic fit, or a shipped network exists for exactly these b-values (s/mm²)."""
    from IVIMEstimatorLib.fits.network_models import find_shipped_model  # imports torch

    if method not in METHOD_ARCHITECTURE:
        return True
    try:
        find_shipped_model(method, np.sort(np.unique(np.asarray(bvalues, float))))
    except InputError:
        return False
    return True


def protocol_model_name(method: str, bvalues: np.ndarray, prior: str, snr_low: float, snr_high: float) -> str:
    """A file name that says what the model is for, e.g. ``scdnn_b0-10-20-500_placenta_snr8-150.pt`` (one SNR:
    ``_snr30``)."""
    values = "-".join(f"{b:g}" for b in np.sort(np.unique(np.asarray(bvalues, float))))
    snr = f"{snr_low:g}" if snr_low == snr_high else f"{snr_low:g}-{snr_high:g}"
    return f"{method}_b{values}_{prior}_snr{snr}.pt"


@dataclass(frozen=True)
class ProtocolTraining:
    """A network to train for a protocol: ``config`` (checked; its ``bvalues`` are the data's distinct ones,
    s/mm², from 0), the torch ``device`` ("auto", "cpu", "cuda") and the model file ``path``. :attr:`exists`: a
    network was trained into ``path`` before (the module uses it instead of training again)."""

    config: TrainingConfig
    device: str
    path: Path

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def run(self, progress: ProgressCallback | None = None, cancel: CancelCheck | None = None) -> Path:
        """Train the network and write it to ``path`` (refused if it exists; its folder is created); return
        ``path``. Cancelling writes nothing."""
        from IVIMEstimatorLib.training.trainer import train  # imports torch

        if self.exists:
            raise InputError(f"{self.path} already exists: choose another file name")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        train(self.config, self.path, device=self.device, progress=progress, cancel=cancel)
        return self.path


def protocol_training(
    bvalues: ArrayLike,
    folder: str | os.PathLike,
    method: str = TrainingConfig.method,
    prior: str = TrainingConfig.prior,
    snr_low: float = TrainingConfig.snr_low,
    snr_high: float = TrainingConfig.snr_high,
    device: str = "auto",
) -> ProtocolTraining:
    """The ``ProtocolTraining`` of ``method`` for ``bvalues`` (s/mm², as acquired: repeats and order do not
    matter; b = 0 required) on synthetic signals from ``prior`` at SNRs ``snr_low``-``snr_high`` (the other settings are
    ``TrainingConfig``'s, those of the shipped networks), on ``device``, written to ``folder/MODEL_FOLDER/
    protocol_model_name(...)``. Raises ``InputError`` (naming the setting) for a bad setting or protocol."""
    b = np.sort(np.unique(np.asarray(bvalues, float)))
    if b.size == 0 or b[0] != 0:
        raise InputError("training needs a b = 0 volume (the networks normalise by it)")
    if device not in DEVICE_CHOICES:
        raise InputError(f"device must be one of {', '.join(DEVICE_CHOICES)}; got {device!r}")
    config = TrainingConfig(
        method=method, bvalues=tuple(float(v) for v in b), prior=prior, snr_low=snr_low, snr_high=snr_high
    )
    config.validate()
    name = protocol_model_name(method, b, prior, snr_low, snr_high)
    return ProtocolTraining(config, device, Path(folder) / MODEL_FOLDER / name)
