"""The IVIM signal model and the b-value protocols of the placenta study.

S(b) = S0 [ (1 - f) exp(-b D) + f exp(-b D*) ], b in s/mm², D and D* in mm²/s, f a fraction in [0, 1].
"""

from __future__ import annotations

import numpy as np

#: Acquired placenta protocol (s/mm²).
ACQUIRED_BVALUES = np.array([0, 10, 20, 50, 80, 100, 150, 200, 300, 500], dtype=float)
#: Accelerated protocol: b = 0 (kept for normalisation) + five b-values (s/mm²).
ACCELERATED_BVALUES = np.array([0, 20, 50, 150, 300, 500], dtype=float)


def ivim_signal(
    bvalues: np.ndarray, f: np.ndarray, D: np.ndarray, Dstar: np.ndarray, S0: np.ndarray | float = 1.0
) -> np.ndarray:
    """Bi-exponential IVIM signal, shape ``broadcast(f, D, Dstar, S0).shape + (n_b,)``.

    ``bvalues`` in s/mm²; ``D``, ``Dstar`` in mm²/s; ``f`` perfusion fraction; ``S0`` signal at b = 0.
    """
    b = np.asarray(bvalues, dtype=float)
    f, D, Dstar, S0 = (np.asarray(x, dtype=float)[..., None] for x in (f, D, Dstar, S0))
    return S0 * ((1 - f) * np.exp(-b * D) + f * np.exp(-b * Dstar))


def add_rician_noise(signal: np.ndarray, sigma: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise: sqrt((S + x1)² + x2²), x ~ N(0, sigma²)."""
    real = signal + sigma * rng.standard_normal(np.shape(signal))
    imaginary = sigma * rng.standard_normal(np.shape(signal))
    return np.sqrt(real**2 + imaginary**2)
