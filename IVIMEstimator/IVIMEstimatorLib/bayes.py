"""Bayesian IVIM estimation on a parameter grid: posterior mean and SD of f, D and D*.

Likelihood: Gaussian noise (a good approximation of Rician noise at SNR >= 10) with S0 and the noise SD
marginalised analytically (flat prior on S0, Jeffreys prior on sigma): for a unit-S0 model curve g(theta)
and signals y of n b-values, p(y | theta) is proportional to |g|^-1 * RSS(theta)^(-(n-1)/2), where RSS is the
residual of the least-squares S0 fit. Prior: a named prior (``priors.PRIORS``), evaluated on the grid (f and
D uniform, D* log-uniform). With the data's own population prior, the posterior mean is the estimator of
least expected squared error: the Bayes-optimal limit that the benchmark compares the networks with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .priors import Prior
from .signal_model import ivim_signal


@dataclass(frozen=True)
class BayesConfig:
    """Grid resolution per parameter."""

    f_points: int = 31
    D_points: int = 31
    Dstar_points: int = 36


@dataclass
class BayesGrid:
    """Grid points ``theta [G, 3]`` (f, D, D*), unit-S0 curves ``curves [G, n_b]`` and the log prior."""

    theta: np.ndarray
    curves: np.ndarray
    log_prior: np.ndarray


def make_grid(prior: Prior, bvalues: np.ndarray, config: BayesConfig = BayesConfig()) -> BayesGrid:
    """The grid covering ``prior``'s support (cell centres), its model curves and log prior weights."""
    def centres(low: float, high: float, n: int) -> np.ndarray:
        edges = np.linspace(low, high, n + 1)
        return (edges[:-1] + edges[1:]) / 2

    f = centres(*prior.f_range, config.f_points)
    D = centres(*prior.D_range, config.D_points)
    Dstar = np.exp(centres(np.log(prior.Dstar_range[0]), np.log(prior.Dstar_range[1]), config.Dstar_points))
    theta = np.stack([axis.ravel() for axis in np.meshgrid(f, D, Dstar, indexing="ij")], axis=1)
    # Cells are equal in f, D and log D*: the log-uniform density times the cell width in D* is constant.
    log_prior = prior.log_density(*theta.T) + np.log(theta[:, 2])
    curves = ivim_signal(bvalues, theta[:, 0], theta[:, 1], theta[:, 2])
    return BayesGrid(theta, curves, log_prior)


def fit_bayes(y: np.ndarray, grid: BayesGrid, chunk: int = 1024) -> dict[str, np.ndarray]:
    """Posterior means and SDs for signals ``y [n, n_b]``: keys f, D, Dstar, S0 and f_sd, D_sd, Dstar_sd.
    Voxels are processed ``chunk`` at a time (memory: chunk x grid points floats)."""
    n_b = y.shape[1]
    gg = np.sum(grid.curves**2, axis=1)
    out = {key: np.empty(len(y)) for key in ("f", "D", "Dstar", "S0", "f_sd", "D_sd", "Dstar_sd")}
    for start in range(0, len(y), chunk):
        block = y[start:start + chunk].astype(np.float64)
        gy = block @ grid.curves.T
        rss = np.clip(np.sum(block**2, axis=1)[:, None] - gy**2 / gg, 1e-20, None)
        log_post = grid.log_prior - 0.5 * np.log(gg) - 0.5 * (n_b - 1) * np.log(rss)
        log_post -= log_post.max(axis=1, keepdims=True)
        weight = np.exp(log_post)
        weight /= weight.sum(axis=1, keepdims=True)
        part = slice(start, start + len(block))
        for column, key in enumerate(("f", "D", "Dstar")):
            mean = weight @ grid.theta[:, column]
            out[key][part] = mean
            out[f"{key}_sd"][part] = np.sqrt(np.clip(weight @ grid.theta[:, column] ** 2 - mean**2, 0, None))
        out["S0"][part] = np.sum(weight * gy / gg, axis=1)
    return out
