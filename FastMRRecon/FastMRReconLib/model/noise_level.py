"""Noise level of a magnitude MR image, measured from the image itself.

The finest diagonal wavelet band (Haar HH1) of white Gaussian noise of SD sigma has SD sigma, while a
piecewise-smooth image leaves it almost empty except along edges; the median absolute HH1 coefficient
divided by 0.6745 is a robust estimate of sigma (Donoho & Johnstone, "Ideal spatial adaptation by wavelet
shrinkage", Biometrika 1994). Real anatomy has texture and edges everywhere, which inflate the median; so
the level is taken from the quietest windows instead: the HH1 energy of 8 x 8-pixel windows (16
coefficients) inside the object, its 10th percentile divided by that of a chi-square variable with 16
degrees of freedom over 16 (the smallest-variance approach of block-based estimators, e.g. Lee & Hoppel,
"Noise modeling and estimation of remotely-sensed images", IGARSS 1989). Two MR specifics are handled:

- **Where to look**: only inside the object. SENSE/GRAPPA images are exactly zero in air far from the head
  and magnitude noise is Rician, not Gaussian, where signal is below a few sigma; so a first estimate over
  all 2 x 2 blocks without zeros sets a threshold, and sigma is re-estimated over blocks whose mean is above
  ``SIGNAL_OVER_NOISE`` x that estimate (where magnitude noise is Gaussian with the complex SD). An image
  with too few such blocks is mostly noise: all its blocks are used (magnitude noise in air then reads
  about 0.66 of the complex SD, and the image reads SNR < 3).
- **Noise that varies in space** (the g-factor of parallel imaging): :func:`noise_map` repeats the
  quiet-window estimate in tiles of ``TILE`` x ``TILE`` pixels (64 windows each) and interpolates it
  smoothly; tiles with too few object windows take the slice's level.

A noise-free or piecewise-constant image has (nearly) all HH1 coefficients zero: its estimate is the floor
``FLOOR`` x the image's 99th percentile (it reads as SNR ~10^4), never 0 or NaN. Spatially correlated noise
(k-space zero-filled to a finer grid) is partly invisible to HH1 and is under-estimated; the benchmark
(``docs/benchmarks/recon_do_no_harm.md``) gives the estimator's accuracy on SENSE images of real anatomy.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

from FastMRICommon.errors import InputError

#: Median absolute deviation of a standard normal variable.
MAD_TO_SD = 0.6745
#: Blocks count as object when their mean exceeds this multiple of the first (all-block) estimate.
SIGNAL_OVER_NOISE = 3.0
#: Fewest object coefficients for an estimate; with fewer, a slice or tile takes its fallback.
MIN_COEFFICIENTS = 64
#: Side, in HH1 coefficients, of the windows whose energy sets the level; and the percentile taken.
WINDOW = 4
QUIET_PERCENTILE = 10.0
#: The same percentile of the mean of WINDOW**2 squared standard normal variables (chi-square / dof).
_QUIET_FACTOR = float(stats.chi2.ppf(QUIET_PERCENTILE / 100, WINDOW**2) / WINDOW**2)
#: Fewest windows for the quiet-window level; with fewer, the median estimate is used.
MIN_WINDOWS = 16
#: Side in pixels of the tiles of :func:`noise_map`.
TILE = 64
#: Smallest estimate, relative to the image's 99th percentile (a noise-free image).
FLOOR = 1e-4
#: Range of the local estimate relative to the slice's (g-factor maps rarely exceed 4).
LOCAL_RANGE = (0.25, 4.0)


def _diagonal_band(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Haar HH1 coefficients, 2 x 2 block means), both ``[H // 2, W // 2]``; blocks holding an exact zero
    (a zero background or zero-filled border) are NaN in both."""
    even = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2].astype(np.float64)
    a, b, c, d = even[0::2, 0::2], even[0::2, 1::2], even[1::2, 0::2], even[1::2, 1::2]
    band, means = (a - b - c + d) / 2, (a + b + c + d) / 4
    zero = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    band[zero], means[zero] = np.nan, np.nan
    return band, means


def _mad_sd(coefficients: np.ndarray) -> float:
    """Robust SD of ``coefficients`` (NaN ignored); NaN when fewer than ``MIN_COEFFICIENTS``."""
    values = coefficients[np.isfinite(coefficients)]
    if values.size < MIN_COEFFICIENTS:
        return float("nan")
    return float(np.median(np.abs(values)) / MAD_TO_SD)


def _object_band(image: np.ndarray) -> np.ndarray:
    """HH1 coefficients of the object's blocks (module docstring), NaN elsewhere."""
    band, means = _diagonal_band(image)
    first = _mad_sd(band)
    if np.isfinite(first) and first > 0:
        inside = np.where(means > SIGNAL_OVER_NOISE * first, band, np.nan)
        if np.isfinite(inside).sum() >= MIN_COEFFICIENTS:  # else the image is mostly noise: keep every block
            band = inside
    return band


def _quiet_sd(band: np.ndarray) -> float:
    """Noise SD from the quietest object windows of ``band`` (module docstring); the median estimate when
    there are fewer than ``MIN_WINDOWS``; NaN when that fails too."""
    rows, columns = band.shape[0] // WINDOW, band.shape[1] // WINDOW
    blocks = band[: rows * WINDOW, : columns * WINDOW].reshape(rows, WINDOW, columns, WINDOW)
    windows = blocks.transpose(0, 2, 1, 3).reshape(rows * columns, -1)
    energy = np.mean(windows[np.all(np.isfinite(windows), axis=1)] ** 2, axis=1)
    if energy.size < MIN_WINDOWS:
        return _mad_sd(band)
    return float(np.sqrt(np.percentile(energy, QUIET_PERCENTILE) / _QUIET_FACTOR))


def _floor(image: np.ndarray) -> float:
    level = float(np.percentile(np.abs(image), 99))
    return FLOOR * (level if level > 0 else float(np.max(np.abs(image))) or 1.0)


def _checked(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2:
        raise InputError(f"noise estimation needs a 2D image, got shape {array.shape}")
    if np.iscomplexobj(array) or not np.all(np.isfinite(array)):
        raise InputError("noise estimation needs a real, finite magnitude image")
    return array


def noise_sd(image: np.ndarray) -> float:
    """Noise SD (the image's units) of one 2D magnitude ``image`` (module docstring); at least the floor."""
    array = _checked(image)
    return _slice_sd(array, _object_band(array))


def _slice_sd(array: np.ndarray, band: np.ndarray) -> float:
    estimate = _quiet_sd(band)
    return max(estimate if np.isfinite(estimate) else 0.0, _floor(array))


def noise_map(image: np.ndarray, slice_sd: float | None = None) -> np.ndarray:
    """Spatially varying noise SD of one 2D magnitude ``image``, same shape, float32 (module docstring).

    ``slice_sd`` is the slice's value (default: :func:`noise_sd`), used where a tile has too few object
    pixels and as the reference of ``LOCAL_RANGE``."""
    array = _checked(image)
    band = _object_band(array)
    return _tile_map(array, band, _slice_sd(array, band) if slice_sd is None else float(slice_sd))


def _tile_map(array: np.ndarray, band: np.ndarray, overall: float) -> np.ndarray:
    """:func:`noise_map` of ``array`` from its object band and the slice's value ``overall``."""
    tile = TILE // 2  # in HH1 coefficients
    rows, columns = -(-band.shape[0] // tile), -(-band.shape[1] // tile)
    padded = np.full((rows * tile, columns * tile), np.nan)
    padded[: band.shape[0], : band.shape[1]] = band
    local = np.full((rows, columns), overall)
    for row in range(rows):
        for column in range(columns):
            estimate = _quiet_sd(padded[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile])
            if np.isfinite(estimate) and estimate > 0:
                local[row, column] = estimate
    local = np.clip(local, LOCAL_RANGE[0] * overall, LOCAL_RANGE[1] * overall)
    local = ndimage.gaussian_filter(local, 0.5, mode="nearest")
    zoom = (array.shape[0] / rows, array.shape[1] / columns)
    centres = [(np.arange(size) + 0.5) / factor - 0.5 for size, factor in zip(array.shape, zoom)]
    grid = np.meshgrid(*centres, indexing="ij")
    return ndimage.map_coordinates(local, grid, order=1, mode="nearest").astype(np.float32)


def noise_maps(volume: np.ndarray) -> np.ndarray:
    """:func:`noise_map` of every slice of ``volume [slices, H, W]``; a slice without enough object
    (an empty slice at the edge of a volume) takes the median slice estimate of the volume."""
    array = np.asarray(volume)
    if array.ndim != 3:
        raise InputError(f"expected a volume [slices, H, W], got shape {array.shape}")
    images = [_checked(image) for image in array]
    bands = [_object_band(image) for image in images]  # once per slice: the level and the map both use it
    estimates = np.array([_quiet_sd(band) for band in bands])
    valid = estimates[np.isfinite(estimates) & (estimates > 0)]
    fallback = max(float(np.median(valid)) if valid.size else 0.0, _floor(array.reshape(-1, array.shape[-1])))
    return np.stack(
        [
            _tile_map(image, band, max(estimate, _floor(image)) if np.isfinite(estimate) and estimate > 0 else fallback)
            for image, band, estimate in zip(images, bands, estimates)
        ]
    )
