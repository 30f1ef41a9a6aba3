"""IVIMEstimator's engine: the IVIM signal model, the placenta phantom, and (issues 3 and 4) the estimators
and motion correction. Importing this package does not import torch."""

from .signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES, add_rician_noise, ivim_signal

__all__ = ["ACCELERATED_BVALUES", "ACQUIRED_BVALUES", "add_rician_noise", "ivim_signal"]
