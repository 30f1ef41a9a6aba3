"""Conventional parallel-imaging reconstruction: coil maps from the calibration lines, and CG-SENSE.

Coil maps (the low-resolution ratio method, a light-weight equivalent of ESPIRiT's first eigenvector for
smooth sensitivities): the fully sampled central lines of k-space, tapered by a Hann window, give
low-resolution coil images; each divided by their root-sum-of-squares is that coil's sensitivity (relative
to the array's combined sensitivity, which is what a prescan-normalised scanner image shows). Outside the
object, where the ratio is noise, the maps are zero (a threshold on the low-resolution RSS, dilated).

CG-SENSE solves ``min_x ||M F S x - y||² + lam ||x||²`` (``S`` coil maps, ``F`` the centred orthonormal FFT,
``M`` the sampling mask) by conjugate gradients on the normal equations, for a batch of slices at once, and
returns ``(1 + lam) x``: with RSS-normalised maps the normal operator is the identity where the coils fully
determine the image (R = 1), so Tikhonov alone would scale such images by 1 / (1 + lam); the factor removes
that bias, and leaves the damping of the noise that unfolding amplifies (high g-factor) where the
undersampled problem is ill-conditioned. ``DEFAULT_REGULARIZATION`` is the regularised SENSE a scanner
delivers (how it was chosen: ``docs/benchmarks/recon.md``, "History"). Shapes are stated per function; a
mask whose k-space centre line is not acquired has no calibration region and raises InputError.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from FastMRICommon.errors import InputError
from FastMRReconLib.kspace.fft import ifft2c

#: Tikhonov lambda of the conventional SENSE reconstruction (module docstring).
DEFAULT_REGULARIZATION = 0.03


def calibration_lines(mask: np.ndarray, phase_encode_axis: int = 0) -> np.ndarray:
    """Indices of the contiguous block of acquired phase-encoding lines around the k-space centre."""
    array = np.asarray(mask)
    lines = np.asarray(array.any(axis=1 - phase_encode_axis) if array.ndim == 2 else array, bool)
    centre = lines.size // 2
    if not lines[centre]:
        raise InputError("the k-space centre line is not acquired: no calibration region for coil maps")
    low, high = centre, centre
    while low > 0 and lines[low - 1]:
        low -= 1
    while high < lines.size - 1 and lines[high + 1]:
        high += 1
    return np.arange(low, high + 1)


def estimate_coil_maps(
    kspace: np.ndarray,
    mask: np.ndarray,
    phase_encode_axis: int = 0,
    threshold: float = 0.05,
    dilation: int = 4,
    max_calibration_lines: int = 24,
) -> np.ndarray:
    """Coil sensitivities ``[coils, rows, columns]`` from the calibration region of ``kspace [coils, rows,
    columns]`` (see the module docstring); RSS 1 inside the object, 0 outside. At most the central
    ``max_calibration_lines`` lines are used (as ESPIRiT's default calibration size), so that the maps stay
    smooth also for fully sampled data; maps from all lines would make SENSE equal to root-sum-of-squares."""
    if kspace.ndim != 3:
        raise InputError(f"k-space must be [coils, rows, columns], got shape {kspace.shape}")
    lines = calibration_lines(mask, phase_encode_axis)
    if lines.size > max_calibration_lines:
        middle = lines.size // 2
        lines = lines[middle - max_calibration_lines // 2 : middle - max_calibration_lines // 2 + max_calibration_lines]
    if lines.size < 4:
        raise InputError(
            f"only {lines.size} fully sampled central k-space lines; coil maps need at least 4 "
            "(raise --center-fraction, or combine by root-sum-of-squares: --combine rss)"
        )
    n_lines = kspace.shape[1 + phase_encode_axis]
    window = np.zeros(n_lines)
    window[lines] = np.hanning(lines.size + 2)[1:-1]
    window = window[:, None] if phase_encode_axis == 0 else window[None, :]
    low = ifft2c(kspace * window)
    rss = np.sqrt(np.sum(np.abs(low) ** 2, axis=0))
    support = ndimage.binary_dilation(rss > threshold * rss.max(), iterations=dilation)
    support = ndimage.binary_fill_holes(support)
    return np.where(support, low / np.maximum(rss, 1e-12), 0).astype(np.complex64)


def cg_sense(
    kspace: np.ndarray,
    mask: np.ndarray,
    maps: np.ndarray,
    iterations: int = 15,
    regularization: float = DEFAULT_REGULARIZATION,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """Complex image(s) from undersampled multi-coil k-space by CG-SENSE.

    ``kspace``: ``[coils, rows, columns]`` or a batch ``[slices, coils, rows, columns]`` (zeros where not
    acquired); ``mask``: ``[rows, columns]`` or ``[slices, rows, columns]`` (True where acquired); ``maps``
    like ``kspace``. ``regularization`` is Tikhonov's lambda relative to the largest eigenvalue of the
    normal operator (about 1 for RSS-normalised maps); the solution is multiplied by ``1 + regularization``
    (module docstring). Returns ``[rows, columns]`` or ``[slices, rows, columns]`` complex64.
    """
    single = kspace.ndim == 3
    if single:
        kspace, maps = kspace[None], maps[None]
        mask = np.asarray(mask)[None]
    mask = np.asarray(mask, bool)
    if mask.ndim == 2:
        mask = mask[None]
    if kspace.shape != maps.shape or kspace.ndim != 4:
        raise InputError(f"k-space {kspace.shape} and coil maps {maps.shape} must be [slices, coils, rows, columns]")
    # Work in ifftshift-ed image and k-space coordinates, where the centred FFT is the plain FFT:
    # ifftshift(fft2c(y)) = fft2(ifftshift(y)). This saves two shifts per operator application.
    axes = (-2, -1)
    sampling = np.fft.ifftshift(mask[:, None], axes=axes).astype(np.float32)
    maps = np.fft.ifftshift(maps, axes=axes)
    data = np.fft.ifftshift(kspace, axes=axes) * sampling

    def normal(x: np.ndarray) -> np.ndarray:  # (S^H F^H M F S + lam) x
        coil_k = np.fft.fft2(maps * x[:, None], axes=axes, norm="ortho") * sampling
        return np.sum(np.conj(maps) * np.fft.ifft2(coil_k, axes=axes, norm="ortho"), axis=1) + regularization * x

    rhs = np.sum(np.conj(maps) * np.fft.ifft2(data, axes=axes, norm="ortho"), axis=1)
    x, residual = np.zeros_like(rhs), rhs.copy()
    direction = residual.copy()
    power = np.sum(np.abs(residual) ** 2, axis=(1, 2))
    stop = tolerance**2 * np.maximum(np.sum(np.abs(rhs) ** 2, axis=(1, 2)), 1e-30)
    for _ in range(iterations):
        active = power > stop
        if not active.any():
            break
        q = normal(direction)
        alpha = np.where(active, power / np.maximum(np.real(np.sum(np.conj(direction) * q, axis=(1, 2))), 1e-30), 0)
        x = x + alpha[:, None, None] * direction
        residual = residual - alpha[:, None, None] * q
        new_power = np.sum(np.abs(residual) ** 2, axis=(1, 2))
        beta = np.where(active, new_power / np.maximum(power, 1e-30), 0)
        direction = residual + beta[:, None, None] * direction
        power = new_power
    x = np.fft.fftshift(x, axes=axes) * (1.0 + regularization)
    x = x.astype(np.complex64)
    return x[0] if single else x


def sense_reconstruction(
    kspace: np.ndarray,
    mask: np.ndarray,
    phase_encode_axis: int = 0,
    iterations: int = 15,
    regularization: float = DEFAULT_REGULARIZATION,
) -> np.ndarray:
    """Magnitude image of one slice's ``kspace [coils, rows, columns]``: coil maps from its own calibration
    lines, then CG-SENSE. On the scale of a root-sum-of-squares image of the same data."""
    maps = estimate_coil_maps(kspace, mask, phase_encode_axis)
    return np.abs(cg_sense(kspace, mask, maps, iterations, regularization)).astype(np.float32)
