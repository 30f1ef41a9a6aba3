"""Synthetic IVIM signals with known parameters, for training and held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from IVIMEstimatorLib.fits.priors import Prior
from IVIMEstimatorLib.signal_model import add_rician_noise, ivim_signal


@dataclass
class SyntheticSet:
    """``signals [n, n_b]`` (S0 = 1 before noise) and the true ``f``, ``D``, ``Dstar`` (mm²/s) of each."""

    signals: np.ndarray
    f: np.ndarray
    D: np.ndarray
    Dstar: np.ndarray
    bvalues: np.ndarray
    snr: float


def synthetic_set(prior: Prior, bvalues: np.ndarray, n: int, snr: float, seed: int) -> SyntheticSet:
    """Draw ``n`` parameter sets from ``prior`` and simulate their signals at ``bvalues`` (s/mm²) with Rician
    noise of SD 1/``snr`` (S0 = 1), float32."""
    rng = np.random.default_rng(seed)
    f, D, Dstar = prior.sample(n, rng)
    clean = ivim_signal(bvalues, f, D, Dstar, 1.0)
    signals = add_rician_noise(clean, 1.0 / snr, rng).astype(np.float32)
    return SyntheticSet(
        signals, f.astype(np.float32), D.astype(np.float32), Dstar.astype(np.float32), np.asarray(bvalues, float), snr
    )


def nrmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Normalised root-mean-square error: rmse / mean of the truth (the accuracy measure of the benchmarks)."""
    return float(np.sqrt(np.mean((np.asarray(estimate, float) - truth) ** 2)) / np.mean(truth))
