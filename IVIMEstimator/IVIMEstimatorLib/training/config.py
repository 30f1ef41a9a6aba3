"""What a network is trained with (``TrainingConfig``), torch-free: the Slicer module reads its settings (the
retraining SNR of its parameter node) before torch may be installed, and ``ivimestimator train`` makes its
options from the same fields (``FastMRICommon.settings``: one home for each default, range and help)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from FastMRICommon.errors import InputError
from FastMRICommon.settings import check_settings, setting
from IVIMEstimatorLib.fits.methods import METHOD_ARCHITECTURE
from IVIMEstimatorLib.fits.priors import DEFAULT_PRIOR, PRIORS
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES


@dataclass
class TrainingConfig:
    """What to train: method, protocol (``bvalues``, s/mm², starting at 0, increasing), prior, SNR, data size and
    optimiser settings (Adam, cosine warm-up over ``warmup_epochs`` then cosine decay: ``trainer.train``).
    The defaults are those of the shipped networks. :meth:`validate` (``train`` calls it) raises an
    ``InputError`` naming the setting for a value outside its range or choices."""

    method: str = setting("scdnn", "network to train", choices=tuple(METHOD_ARCHITECTURE))
    bvalues: tuple[float, ...] = tuple(float(b) for b in ACCELERATED_BVALUES)
    prior: str = setting(
        DEFAULT_PRIOR, "prior the synthetic signals' f, D and D* (mm²/s) are drawn from", choices=tuple(PRIORS)
    )
    snr_low: float = setting(
        8.0,
        "lowest SNR at b = 0 of the synthetic signals (Rician noise; SNRs are drawn log-uniformly from the lowest "
        "to the highest, and the networks are told each signal's SNR)",
        minimum=2.0,
        maximum=1000.0,
        parameter="trainingSnrLow",
    )
    snr_high: float = setting(
        150.0,
        "highest SNR at b = 0 of the synthetic signals (equal to the lowest: one SNR)",
        minimum=2.0,
        maximum=1000.0,
        parameter="trainingSnrHigh",
    )
    samples: int = setting(
        200_000, "synthetic signals: nine tenths to train on, one tenth to validate on", minimum=1, maximum=10_000_000
    )
    epochs: int = setting(30, "passes over the training signals", minimum=1, maximum=1000)
    warmup_epochs: int = 3
    batch_size: int = 128
    learning_rate: float = 1e-3
    dictionary_size: int = 600
    units: int = 3
    seed: int = setting(
        0, "random seed of the synthetic signals and of the network's initial weights", minimum=0, maximum=2**31 - 1
    )
    snr_loss_power: float = setting(
        1.0,
        "trained over an SNR range, each signal's squared error is weighted by its SNR to this power (weights of "
        "mean 1): the best achievable error falls about as 1/SNR, so 0 lets the low-SNR signals dominate the loss "
        "and 1 weighs every SNR by its error relative to that limit",
        minimum=0.0,
        maximum=4.0,
    )
    gradient_clip: float = 1.0  # maximum gradient norm: a safeguard against rare exploding steps
    architecture_options: dict = field(default_factory=dict)

    def validate(self) -> None:
        check_settings(self)
        b = np.asarray(self.bvalues, float)
        if b.size < 3 or np.any(np.diff(b) <= 0) or b[0] != 0:
            raise InputError("training b-values must start at 0 and increase strictly, with at least 3 values")
        if self.snr_low > self.snr_high:
            raise InputError(f"the lowest training SNR ({self.snr_low:g}) exceeds the highest ({self.snr_high:g})")
        if self.batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {self.batch_size}")
        if self.samples < self.minimum_samples():
            raise InputError(
                f"training needs at least {self.minimum_samples()} synthetic signals (10 batches of "
                f"{self.batch_size}: 90% to train on, 10% to validate), got {self.samples}"
            )

    def minimum_samples(self) -> int:
        """Fewest signals ``train`` accepts: ten batches, so that the 10% validation split holds a batch."""
        return 10 * self.batch_size
