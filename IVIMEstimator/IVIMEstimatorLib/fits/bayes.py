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

from FastMRICommon.device import DeviceLike
from IVIMEstimatorLib.fits.priors import Prior
from IVIMEstimatorLib.signal_model import ivim_signal


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


#: Below this ratio of the best residual to |y|² (very high SNR), float32 loses the residual to cancellation.
FLOAT32_MIN_RELATIVE_RESIDUAL = 1e-4


def fit_bayes(y: np.ndarray, grid: BayesGrid, chunk: int = 2048, device: DeviceLike = "cpu") -> dict[str, np.ndarray]:
    """Posterior means and SDs for signals ``y [n, n_b]``: keys f, D, Dstar, S0 and f_sd, D_sd, Dstar_sd.

    Computed with torch on ``device``, ``chunk`` voxels at a time (memory: a few chunk x grid-size arrays), in
    float32; voxels so clean that the residual RSS = |y|² - (g.y)²/|g|² would cancel in float32 are redone
    in float64.
    """
    import torch

    centre = grid.theta.mean(axis=0)  # centred parameters keep E[x²] - E[x]² accurate
    tensors = {torch.float32: _GridTensors(grid, centre, torch.float32, device)}
    moments = np.empty((len(y), 7))  # 3 means, 3 mean squares, S0
    for start in range(0, len(y), chunk):
        block = y[start : start + chunk]
        result, relative_residual = tensors[torch.float32].posterior_moments(block)
        clean = relative_residual < FLOAT32_MIN_RELATIVE_RESIDUAL
        if clean.any():
            if torch.float64 not in tensors:
                tensors[torch.float64] = _GridTensors(grid, centre, torch.float64, device)
            result[clean] = tensors[torch.float64].posterior_moments(block[clean])[0]
        moments[start : start + len(block)] = result
    out = {"S0": moments[:, 6]}
    for column, key in enumerate(("f", "D", "Dstar")):
        mean = moments[:, column]
        out[key] = mean + centre[column]
        out[f"{key}_sd"] = np.sqrt(np.clip(moments[:, 3 + column] - mean**2, 0, None))
    return out


class _GridTensors:
    """The grid as torch tensors of one dtype on one device, built once per ``fit_bayes`` call."""

    def __init__(self, grid: BayesGrid, centre: np.ndarray, dtype, device) -> None:
        import torch

        self.dtype, self.device = dtype, device
        self.curves = torch.from_numpy(grid.curves).to(device, dtype)
        self.gg = torch.sum(self.curves**2, dim=1)
        self.log_weight = torch.from_numpy(grid.log_prior).to(device, dtype) - 0.5 * torch.log(self.gg)
        theta = torch.from_numpy(grid.theta - centre).to(device, dtype)
        self.theta_moments = torch.cat([theta, theta**2], dim=1)  # [G, 6]

    def posterior_moments(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior E[theta - centre], E[(theta - centre)²] and E[S0] per voxel ``[n, 7]``, and each voxel's
        smallest RSS relative to |y|²."""
        import torch

        n_b = y.shape[1]
        with torch.inference_mode():
            block = torch.from_numpy(y).to(self.device, self.dtype)
            gy = block @ self.curves.T  # [n, G]
            yy = torch.sum(block**2, dim=1, keepdim=True)
            scale = gy / self.gg  # least-squares S0 at each grid point
            rss = torch.addcmul(yy, gy, scale, value=-1).clamp_(min=1e-30)  # |y|² - (g.y)²/|g|²
            relative = torch.amin(rss, dim=1) / yy[:, 0]
            log_post = rss.log_().mul_(-0.5 * (n_b - 1)).add_(self.log_weight)  # in place: [n, G] arrays dominate
            log_post.sub_(torch.amax(log_post, dim=1, keepdim=True))
            weight = log_post.exp_()
            total = torch.sum(weight, dim=1, keepdim=True)
            moments = (
                torch.cat([weight @ self.theta_moments, torch.sum(weight * scale, dim=1, keepdim=True)], dim=1) / total
            )
        return moments.double().cpu().numpy(), relative.double().cpu().numpy()
