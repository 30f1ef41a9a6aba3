"""Synthetic IVIM signals with known parameters, for training and held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from IVIMEstimatorLib.fits.priors import Prior
from IVIMEstimatorLib.signal_model import add_rician_noise, ivim_signal


@dataclass
class SyntheticSet:
    """``signals [n, n_b]`` (S0 = 1 before noise), the true ``f``, ``D``, ``Dstar`` (mm²/s) of each, and the
    ``noise_sd`` of each signal (S0 = 1 units: 1 / its SNR). ``snr``: the SNR of the set, or its (lowest,
    highest) range."""

    signals: np.ndarray
    f: np.ndarray
    D: np.ndarray
    Dstar: np.ndarray
    bvalues: np.ndarray
    snr: float | tuple[float, float]
    noise_sd: np.ndarray


def synthetic_set(
    prior: Prior, bvalues: np.ndarray, n: int, snr: float | tuple[float, float], seed: int
) -> SyntheticSet:
    """Draw ``n`` parameter sets from ``prior`` and simulate their signals at ``bvalues`` (s/mm²) with Rician
    noise of SD 1/SNR (S0 = 1), float32. ``snr``: one SNR, or a (lowest, highest) range from which each
    signal's SNR is drawn log-uniformly."""
    rng = np.random.default_rng(seed)
    f, D, Dstar = prior.sample(n, rng)
    clean = ivim_signal(bvalues, f, D, Dstar, 1.0)
    if isinstance(snr, tuple):
        low, high = (float(value) for value in snr)
        noise_sd = 1.0 / np.exp(rng.uniform(np.log(low), np.log(high), n))
        snr = (low, high)
    else:
        noise_sd = np.full(n, 1.0 / float(snr))
    signals = add_rician_noise(clean, noise_sd[:, None], rng).astype(np.float32)
    return SyntheticSet(
        signals,
        f.astype(np.float32),
        D.astype(np.float32),
        Dstar.astype(np.float32),
        np.asarray(bvalues, float),
        snr,
        noise_sd.astype(np.float32),
    )


def nrmse(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Normalised root-mean-square error: rmse / mean of the truth (the accuracy measure of the benchmarks)."""
    return float(np.sqrt(np.mean((np.asarray(estimate, float) - truth) ** 2)) / np.mean(truth))


def within_one_sd(estimate: np.ndarray, sd: np.ndarray, truth: np.ndarray) -> float:
    """Share of signals whose truth lies within +-1 ``sd`` of the ``estimate`` (the calibration measure of the SD
    maps: 68.3% for Gaussian errors)."""
    return float(np.mean(np.abs(np.asarray(estimate, float) - truth) <= sd))
