"""Segmented, then bounded full non-linear least-squares IVIM fit, vectorised over voxels.

Input: signals ``y [n, n_b]`` normalised so that S(lowest b) is about 1, at b-values ``b`` (s/mm²). Output:
(S0, f, D, D*) per voxel, S0 relative to the normalisation, D and D* in mm²/s, within ``NllsConfig``'s bounds.

1. Segmented start: D from a mono-exponential (log-linear) fit of the b >= 200 s/mm² signals; f from its
   intercept relative to S0; D* starts at 10 D.
2. Grid start: for a grid of (D, D*) pairs the model is linear in the two compartment amplitudes, so their
   least-squares values are closed-form (variable projection); the best grid pair is a second start.
3. Full fit of (S0, f, D, D*) by a batched, bounds-projected Levenberg-Marquardt: every voxel takes its own
   damped Gauss-Newton steps, all voxels in one set of numpy operations (no per-voxel scipy loop), from both
   starts; each voxel keeps the result with the smaller residual. Two starts keep the fit out of the local
   minima that one start can lead into when D* is only a few times D (e.g. kidney cortex in OSIPI's test
   signals).
4. Model selection: a mono-exponential fit S0 exp(-b D) (log-linear start weighted by S², then the same
   Levenberg-Marquardt on (S0, D)) competes with the bi-exponential one by the Bayesian information
   criterion for least squares with Gaussian noise, BIC = n ln(RSS / n) + k ln n with k = 2 or 4 parameters
   and n b-values (Schwarz G., Ann. Statist. 6:461-464, 1978; Burnham K.P., Anderson D.R., Model Selection and
   Multimodel Inference, 2nd ed., Springer 2002, section 6.4). The bi-exponential fit is kept only when its
   BIC is lower, n ln(RSS_mono / RSS_bi) > (4 - 2) ln n; otherwise f = 0, S0 and D are the mono-exponential
   fit's and D* = 0 (no pseudo-diffusion compartment; the value OSIPI's phantom gives stomach contents).
   Why: on free water (f = 0, D = 3e-3 mm²/s) the bi-exponential fit ends at D* ~ D, where f does not change
   the curve, and returns an arbitrary f (``test_nlls_fits_free_water_mono_exponentially``). The effect on
   accuracy: docs/benchmarks/ivim.md (Table 1, ``nlls``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Parameter order and scales (S0 relative to the b = 0 signal; D, D* in mm²/s).
SCALE = np.array([1.0, 1.0, 1e-3, 1e-2])


@dataclass(frozen=True)
class NllsConfig:
    """Bounds (S0 relative, f, D and D* in mm²/s), the segmentation threshold (s/mm²) and iteration limits."""

    S0_bounds: tuple[float, float] = (0.0, 3.0)
    f_bounds: tuple[float, float] = (0.0, 1.0)
    D_bounds: tuple[float, float] = (0.0, 5e-3)
    Dstar_bounds: tuple[float, float] = (3e-3, 0.5)
    segment_b: float = 200.0
    grid_D: int = 12
    grid_Dstar: int = 16
    iterations: int = 60
    tolerance: float = 1e-10

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.array([self.S0_bounds[0], self.f_bounds[0], self.D_bounds[0], self.Dstar_bounds[0]])
        high = np.array([self.S0_bounds[1], self.f_bounds[1], self.D_bounds[1], self.Dstar_bounds[1]])
        return low / SCALE, high / SCALE


def segmented_start(y: np.ndarray, b: np.ndarray, config: NllsConfig) -> np.ndarray:
    """Initial (S0, f, D, D*) per voxel (``y [n, n_b]`` normalised so that S(b=0) is about 1)."""
    high = b >= config.segment_b
    if high.sum() < 2:
        high = b >= np.sort(b)[-2]
    log_y = np.log(np.clip(y[:, high], 1e-6, None))
    bh = b[high]
    slope, intercept = np.polyfit(bh, log_y.T, 1)
    D = np.clip(-slope, config.D_bounds[0], config.D_bounds[1])
    S0 = np.clip(y[:, b == b.min()].mean(axis=1), 1e-6, None)
    f = np.clip(1 - np.exp(intercept) / S0, *config.f_bounds)
    Dstar = np.clip(10 * D, *config.Dstar_bounds)
    return np.stack([S0, f, D, Dstar], axis=1)


def grid_start(y: np.ndarray, b: np.ndarray, config: NllsConfig, chunk: int = 8192) -> np.ndarray:
    """Best (S0, f, D, D*) per voxel over a (D, D*) grid (D linear, D* log-spaced inside the bounds) with the
    two compartment amplitudes solved by linear least squares (pairs needing a negative amplitude excluded)."""
    D_values = np.linspace(max(config.D_bounds[0], 1e-5), config.D_bounds[1], config.grid_D)
    Dstar_values = np.exp(
        np.linspace(np.log(config.Dstar_bounds[0]), np.log(config.Dstar_bounds[1]), config.grid_Dstar)
    )
    D, Dstar = (axis.ravel() for axis in np.meshgrid(D_values, Dstar_values, indexing="ij"))
    keep = Dstar > D
    D, Dstar = D[keep], Dstar[keep]
    basis = np.stack([np.exp(-np.outer(D, b)), np.exp(-np.outer(Dstar, b))], axis=2)  # [G, n_b, 2]
    inverse_gram = np.linalg.inv(np.einsum("gbk,gbl->gkl", basis, basis))  # [G, 2, 2]
    best_amplitudes, best = np.empty((len(y), 2)), np.empty(len(y), dtype=int)
    for start in range(0, len(y), chunk):  # memory: chunk x G x 2 floats
        block = y[start : start + chunk]
        projections = np.einsum("gbk,nb->ngk", basis, block)
        amplitudes = np.einsum("gkl,ngl->ngk", inverse_gram, projections)
        # residual of the least-squares fit: |y|^2 - (A^T y) . amplitudes
        cost = np.sum(block**2, axis=1)[:, None] - np.sum(projections * amplitudes, axis=2)
        cost[np.any(amplitudes < 0, axis=2)] = np.inf
        index = np.argmin(cost, axis=1)
        rows = np.arange(len(block))
        part = slice(start, start + len(block))
        best[part], best_amplitudes[part] = index, amplitudes[rows, index]
    tissue, perfusion = best_amplitudes.T
    S0 = tissue + perfusion
    f = np.where(S0 > 0, perfusion / np.where(S0 > 0, S0, 1), 0.0)
    return np.stack([S0, f, D[best], Dstar[best]], axis=1)


def _model_and_jacobian(q: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signal and its Jacobian w.r.t. the scaled parameters q = p / SCALE, shapes [n, n_b], [n, n_b, 4]."""
    S0, f, D, Dstar = (q * SCALE).T
    e1, e2 = np.exp(-np.outer(D, b)), np.exp(-np.outer(Dstar, b))
    mix = (1 - f)[:, None] * e1 + f[:, None] * e2
    jacobian = (
        np.stack([mix, S0[:, None] * (e2 - e1), -(S0 * (1 - f))[:, None] * b * e1, -(S0 * f)[:, None] * b * e2], axis=2)
        * SCALE
    )
    return S0[:, None] * mix, jacobian


def fit_biexponential(y: np.ndarray, b: np.ndarray, config: NllsConfig = NllsConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Bi-exponential fit of ``y [n, n_b]`` (normalised signals) at ``b`` (s/mm²) from both starts (steps 1-3):
    (S0, f, D, D*) as ``[n, 4]`` (D, D* in mm²/s) and the residual sums of squares ``[n]``."""
    low, high = config.bounds()
    q, cost = _levenberg_marquardt(
        y, b, np.clip(segmented_start(y, b, config) / SCALE, low, high), low, high, _model_and_jacobian, config
    )
    grid_q, grid_cost = _levenberg_marquardt(
        y, b, np.clip(grid_start(y, b, config) / SCALE, low, high), low, high, _model_and_jacobian, config
    )
    better = grid_cost < cost
    q[better], cost[better] = grid_q[better], grid_cost[better]
    return q * SCALE, cost


#: Scales of the mono-exponential parameters (S0 relative, D in mm²/s).
MONO_SCALE = SCALE[[0, 2]]


def fit_monoexponential(
    y: np.ndarray, b: np.ndarray, config: NllsConfig = NllsConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Mono-exponential fit S0 exp(-b D) of ``y [n, n_b]`` at ``b`` (s/mm²), within the S0 and D bounds:
    (S0, D) as ``[n, 2]`` (D in mm²/s) and the residual sums of squares ``[n]``. Start: the log-linear fit
    weighted by S² (the log of a noisy small signal is unreliable), then Levenberg-Marquardt."""
    weight = np.clip(y, 1e-6, None) ** 2
    log_y = np.log(np.clip(y, 1e-6, None))
    w, wb, wbb = weight.sum(axis=1), weight @ b, weight @ b**2
    wy, wby = np.sum(weight * log_y, axis=1), np.sum(weight * log_y * b, axis=1)
    determinant = np.where(w * wbb - wb**2 > 0, w * wbb - wb**2, 1.0)
    slope, intercept = (w * wby - wb * wy) / determinant, (wbb * wy - wb * wby) / determinant
    start = np.stack([np.clip(np.exp(intercept), *config.S0_bounds), np.clip(-slope, *config.D_bounds)], axis=1)
    low, high = (bound[[0, 2]] for bound in config.bounds())
    q, cost = _levenberg_marquardt(y, b, start / MONO_SCALE, low, high, _mono_model_and_jacobian, config)
    return q * MONO_SCALE, cost


def _mono_model_and_jacobian(q: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S0 exp(-b D) and its Jacobian w.r.t. the scaled (S0, D), shapes [n, n_b], [n, n_b, 2]."""
    S0, D = (q * MONO_SCALE).T
    decay = np.exp(-np.outer(D, b))
    return S0[:, None] * decay, np.stack([decay, -S0[:, None] * b * decay], axis=2) * MONO_SCALE


def prefers_monoexponential(rss_mono: np.ndarray, rss_bi: np.ndarray, n_b: int) -> np.ndarray:
    """Per voxel: True when the mono-exponential model's BIC is not above the bi-exponential one's, i.e.
    n ln(RSS_mono / RSS_bi) <= (4 - 2) ln n (written without the logarithm of the ratio, so that zero
    residuals compare too)."""
    return rss_mono <= rss_bi * np.exp((4 - 2) * np.log(n_b) / n_b)


def fit_nlls(y: np.ndarray, b: np.ndarray, config: NllsConfig = NllsConfig()) -> np.ndarray:
    """Fit ``y [n, n_b]`` (normalised signals) at ``b`` (s/mm²); return (S0, f, D, D*) as ``[n, 4]`` (D, D* in
    mm²/s), the mono-exponential model (f = 0, D* = 0) where BIC prefers it (module docstring, step 4)."""
    parameters, rss_bi = fit_biexponential(y, b, config)
    mono, rss_mono = fit_monoexponential(y, b, config)
    simpler = prefers_monoexponential(rss_mono, rss_bi, len(b))
    parameters[simpler] = np.stack(
        [mono[simpler, 0], np.zeros(simpler.sum()), mono[simpler, 1], np.zeros(simpler.sum())], axis=1
    )
    return parameters


def _levenberg_marquardt(
    y: np.ndarray,
    b: np.ndarray,
    q: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    model_and_jacobian,
    config: NllsConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Bounds-projected LM from the scaled start ``q [n, p]`` within ``low``, ``high`` (scaled), for the model
    ``model_and_jacobian(q, b) -> (signals [n, n_b], Jacobian [n, n_b, p])``; returns the scaled parameters
    and residual sums of squares."""
    model, jacobian = model_and_jacobian(q, b)
    cost = np.sum((model - y) ** 2, axis=1)
    damping = np.full(len(y), 1e-2)
    active = np.ones(len(y), dtype=bool)
    eye = np.eye(q.shape[1])
    for _ in range(config.iterations):
        index = np.flatnonzero(active)
        if index.size == 0:
            break
        J, r = jacobian[index], model[index] - y[index]
        JTJ = np.einsum("nbi,nbj->nij", J, J)
        gradient = np.einsum("nbi,nb->ni", J, r)
        diagonal = np.einsum("nii->ni", JTJ)[:, :, None] * eye
        step = np.linalg.solve(JTJ + damping[index, None, None] * (diagonal + 1e-9 * eye), -gradient[..., None])[..., 0]
        trial = np.clip(q[index] + step, low, high)
        trial_model, trial_jacobian = model_and_jacobian(trial, b)
        trial_cost = np.sum((trial_model - y[index]) ** 2, axis=1)
        better = trial_cost < cost[index]
        accepted = index[better]
        gain = cost[accepted] - trial_cost[better]
        q[accepted], model[accepted], jacobian[accepted], cost[accepted] = (
            trial[better],
            trial_model[better],
            trial_jacobian[better],
            trial_cost[better],
        )
        damping[accepted] = np.maximum(damping[accepted] / 3, 1e-7)
        damping[index[~better]] *= 4
        converged = np.zeros(len(y), dtype=bool)
        converged[accepted] = gain <= config.tolerance * np.maximum(cost[accepted], 1e-12) + 1e-14
        converged[index[~better]] = damping[index[~better]] > 1e6
        active &= ~converged
    return q, cost
