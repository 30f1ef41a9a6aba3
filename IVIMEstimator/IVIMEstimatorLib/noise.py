"""The noise level of a diffusion-weighted series, measured from the data (the SD of the complex Gaussian noise
per channel, in the signal's units; SNR = S(b=0) / SD).

- **Background** (:func:`background_noise_sd`): outside the object, a magnitude image is pure noise with a
  Rayleigh distribution (Gudbjartsson and Patz, MRM 34, 1995), whose median is ``SD x sqrt(2 ln 2)``. The
  object is where the mean over all b-values is clearly above the noise level of the darkest fifth of the
  voxels, dilated by ``OBJECT_MARGIN`` voxels; exact zeros (zero-filled or masked air) are not noise and are
  left out. Needs ``MIN_BACKGROUND_VOXELS`` samples whose distribution has a Rayleigh shape (mean² / mean of
  squares within ``RAYLEIGH_SHAPE_TOLERANCE`` of pi / 4); otherwise there is no usable background.
- **Residuals** (:func:`residual_noise_sd`), where there is no usable background (a cropped series, a bare
  array of voxel signals): the bi-exponential least-squares fit (``fits.nlls``) of voxels well above the noise
  (b = 0 signal in the upper half), each voxel's residual sum of squares over its degrees of freedom
  (b-values - 4), the median over voxels corrected to the mean of a chi-square (Wilson-Hilferty). Rician bias is
  negligible for these voxels. Needs ``MIN_RESIDUAL_VOXELS`` voxels and at least 5 b-values.

:func:`estimate_noise_sd` takes the background when there is one, else the residuals, and says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from FastMRICommon.errors import InputError

#: Median of a Rayleigh variable over its parameter (the noise SD).
RAYLEIGH_MEDIAN = float(np.sqrt(2 * np.log(2)))
OBJECT_MARGIN = 2
#: mean² / mean of squares of a Rayleigh variable (pi / 4), and how far a background may depart from it.
RAYLEIGH_SHAPE = float(np.pi / 4)
RAYLEIGH_SHAPE_TOLERANCE = 0.05
MIN_BACKGROUND_VOXELS = 500
MIN_RESIDUAL_VOXELS = 200
#: Parameters of the bi-exponential model (S0, f, D, D*).
MODEL_PARAMETERS = 4


@dataclass(frozen=True)
class NoiseEstimate:
    """``sd``: the noise SD (signal units); ``source``: "background", "residuals" or "given"; ``voxels``: how
    many it was measured on (0 when given)."""

    sd: float
    source: str
    voxels: int


def background_noise_sd(volumes: np.ndarray) -> NoiseEstimate | None:
    """The Rayleigh estimate from the background of ``volumes [n, k, j, i]``, or None when the series has no
    usable background (module docstring)."""
    volumes = np.asarray(volumes, dtype=float)
    if volumes.ndim != 4:
        raise InputError(f"a series is [n, k, j, i]; got shape {volumes.shape}")
    finite = np.all(np.isfinite(volumes), axis=0)
    mean = np.where(finite, np.mean(np.where(np.isfinite(volumes), volumes, 0), axis=0), 0)
    positive = mean[finite & (mean > 0)]
    if positive.size < 10:
        return None
    # a first noise level from the darkest fifth of the voxels (background, when there is one), then the object:
    # voxels whose mean over the series is clearly above the noise's (mean of a Rayleigh: 1.2533 sd)
    first = np.median(positive[positive <= np.percentile(positive, 20)]) / (1.2533 * np.sqrt(1.0))
    level = 1.2533 * first + 6 * 0.655 * first / np.sqrt(volumes.shape[0])
    obj = ndimage.binary_dilation(mean > level, iterations=OBJECT_MARGIN)
    background = volumes[:, ~obj & finite]
    background = background[background > 0]
    if background.size < MIN_BACKGROUND_VOXELS:
        return None
    if abs(np.mean(background) ** 2 / np.mean(background**2) - RAYLEIGH_SHAPE) > RAYLEIGH_SHAPE_TOLERANCE:
        return None  # not pure noise (dark tissue, ghosts, a masked or scaled background): use the residuals
    return NoiseEstimate(float(np.median(background) / RAYLEIGH_MEDIAN), "background", int(background.size))


def residual_noise_sd(signals: np.ndarray, bvalues: np.ndarray) -> NoiseEstimate:
    """The fit-residual estimate from voxel signals ``[..., n_b]`` at ``bvalues`` (s/mm², one b = 0 at least);
    an InputError when there are too few b-values or voxels (module docstring)."""
    from IVIMEstimatorLib.fits.nlls import fit_biexponential

    b = np.asarray(bvalues, dtype=float)
    y = np.asarray(signals, dtype=float).reshape(-1, b.size)
    dof = b.size - MODEL_PARAMETERS
    if dof < 1:
        raise InputError(f"fit residuals need at least {MODEL_PARAMETERS + 1} b-values to measure noise; got {b.size}")
    if not np.any(b == 0):
        raise InputError("fit residuals need a b = 0 volume to measure noise")
    s0 = y[:, b == 0].mean(axis=1)
    usable = np.all(np.isfinite(y), axis=1) & (s0 > 0)
    bright = usable & (s0 >= np.median(s0[usable])) if usable.any() else usable
    if bright.sum() < MIN_RESIDUAL_VOXELS:
        raise InputError(
            f"too few voxels to measure the noise from fit residuals ({int(bright.sum())}, at least "
            f"{MIN_RESIDUAL_VOXELS}) and no background: give the noise SD"
        )
    normalised = y[bright] / s0[bright, None]
    _, rss = fit_biexponential(normalised, b)
    variance = rss * s0[bright] ** 2 / dof
    median_over_mean = (1 - 2 / (9 * dof)) ** 3  # Wilson-Hilferty: median of chi2_k / k
    return NoiseEstimate(float(np.sqrt(np.median(variance) / median_over_mean)), "residuals", int(bright.sum()))


def estimate_noise_sd(volumes: np.ndarray, bvalues: np.ndarray) -> NoiseEstimate:
    """The background estimate of ``volumes [n, k, j, i]`` when it has a background, else the residual one."""
    found = background_noise_sd(volumes)
    if found is not None:
        return found
    return residual_noise_sd(np.moveaxis(np.asarray(volumes), 0, -1), bvalues)
