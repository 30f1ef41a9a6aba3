"""Named parameter priors for synthetic IVIM data: D and D* in mm²/s, f a fraction.

A prior draws f uniformly (or from a clipped normal, for "shifted population" tests), D uniformly and D*
log-uniformly, as is usual for IVIM simulations. ``placenta`` is the training prior of the shipped models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from FastMRICommon.errors import InputError


@dataclass(frozen=True)
class Prior:
    """f ~ U(f_range) (or N(f_mean, f_sd) clipped to f_range), D ~ U(D_range), D* ~ log-U(Dstar_range)."""

    name: str
    f_range: tuple[float, float]
    D_range: tuple[float, float]
    Dstar_range: tuple[float, float]
    f_mean: float | None = None
    f_sd: float | None = None

    def __post_init__(self) -> None:
        if (self.f_mean is None) != (self.f_sd is None):
            raise ValueError(f"prior {self.name!r}: give both f_mean and f_sd (normal f) or neither (uniform f)")

    def _f_normal(self) -> tuple[float, float] | None:
        """(mean, SD) of f's normal distribution, or None when f is uniform."""
        if self.f_mean is None or self.f_sd is None:
            return None
        return self.f_mean, self.f_sd

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` draws of (f, D, D*)."""
        normal = self._f_normal()
        if normal is None:
            f = rng.uniform(*self.f_range, n)
        else:
            f = np.clip(rng.normal(*normal, n), *self.f_range)
        D = rng.uniform(*self.D_range, n)
        Dstar = np.exp(rng.uniform(np.log(self.Dstar_range[0]), np.log(self.Dstar_range[1]), n))
        return f, D, Dstar

    def log_density(self, f: np.ndarray, D: np.ndarray, Dstar: np.ndarray) -> np.ndarray:
        """Log prior density (up to a constant) of parameter values; -inf outside the support."""
        inside = (
            (f >= self.f_range[0])
            & (f <= self.f_range[1])
            & (D >= self.D_range[0])
            & (D <= self.D_range[1])
            & (Dstar >= self.Dstar_range[0])
            & (Dstar <= self.Dstar_range[1])
        )
        log_p = -np.log(np.clip(Dstar, 1e-12, None))  # log-uniform D*
        normal = self._f_normal()
        if normal is not None:
            mean, sd = normal
            log_p = log_p - 0.5 * ((f - mean) / sd) ** 2
        return np.where(inside, log_p, -np.inf)


PRIORS: dict[str, Prior] = {
    "placenta": Prior("placenta", (0.05, 0.55), (0.8e-3, 2.5e-3), (10e-3, 150e-3)),
    # f ~ N(0.38, 0.05) as reported for placenta at 3 T: the "shifted population" of the generalisation test
    "placenta-3T": Prior("placenta-3T", (0.0, 1.0), (0.8e-3, 2.5e-3), (10e-3, 150e-3), f_mean=0.38, f_sd=0.05),
    "liver": Prior("liver", (0.05, 0.40), (0.7e-3, 1.8e-3), (15e-3, 150e-3)),
    "kidney": Prior("kidney", (0.05, 0.40), (1.4e-3, 2.6e-3), (10e-3, 100e-3)),
    "brain": Prior("brain", (0.0, 0.15), (0.5e-3, 1.2e-3), (5e-3, 100e-3)),
    # broad body prior covering OSIPI's reference tissues
    "generic": Prior("generic", (0.0, 0.8), (0.2e-3, 3.5e-3), (5e-3, 150e-3)),
}

#: The prior when none is named (the Bayes fit, ``fit``, ``IvimModel``, a network trained for a protocol): the
#: placenta, the extension's use case and the prior of the shipped placenta networks, so that Bayes and network
#: maps of a placenta assume the same tissue (``map_logic.EstimateConfig.prior``). ``generic``: other tissue.
DEFAULT_PRIOR = "placenta"


def get_prior(name: str) -> Prior:
    if name not in PRIORS:
        raise InputError(f"unknown prior {name!r}; choose one of {', '.join(PRIORS)}")
    return PRIORS[name]
