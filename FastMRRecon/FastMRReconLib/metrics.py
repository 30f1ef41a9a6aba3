"""Image-quality measures with one stated convention, and the 4 x 4-pixel ROI statistics of the reader study.

PSNR and SSIM compare an image with a reference of the same shape ``(H, W)`` or ``(slices, H, W)``:
- data range = the maximum of the reference (the whole volume's, for a volume);
- masking: only pixels of the *object mask* count: reference above 10% of its 99th percentile, holes
  filled and dilated by 3 pixels per slice (the head and a rim of background). Outside the object the
  reference is a noise floor that conventional reconstructions (SENSE, CS) set to zero and networks
  learn to imitate, so an unmasked score would mostly measure background handling, not anatomy;
- SSIM: Wang et al. 2004 with a 7 x 7 uniform window (K1 = 0.01, K2 = 0.03, sample covariances), computed
  in 2D per slice; the SSIM map is averaged over the window centres inside the object mask (windows that
  fit inside the image), over all slices together;
- PSNR: 10 log10(range² / MSE), MSE over the object-mask pixels of the volume.

The SSIM here is also the training loss's SSIM (torch, differentiable; unmasked over the patch), so the
metric and the loss agree.

ROI statistics: a point (i, j, k) (column, row, slice) defines an in-plane ``size`` x ``size`` ROI on slice k
whose pixels are columns i - size//2 ... i - size//2 + size - 1 (same for rows). SNR = mean(ROI) / SD(background
ROI); CNR = (mean(ROI 1) - mean(ROI 2)) / SD(background ROI); SD is the sample SD (ddof 1). The size is a
setting (:class:`RoiSettings`: its default and range, for the module, the command line and this file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from FastMRICommon.errors import InputError
from FastMRICommon.settings import check_settings, check_value, setting, settings_field

if TYPE_CHECKING:  # torch is imported where SSIM is computed: ROI statistics work without it
    import torch

SSIM_WINDOW = 7
_K1, _K2 = 0.01, 0.03


def ssim_map(image: torch.Tensor, reference: torch.Tensor, data_range: torch.Tensor | float) -> torch.Tensor:
    """SSIM map of ``[batch, 1, H, W]`` tensors at the window centres that fit, ``[batch, 1, H-6, W-6]``;
    ``data_range`` a number or a ``[batch]`` tensor."""
    import torch
    from torch.nn import functional as F

    data_range = torch.as_tensor(data_range, dtype=image.dtype, device=image.device).reshape(-1, 1, 1, 1)
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    n = SSIM_WINDOW**2
    mean_x, mean_y = F.avg_pool2d(image, SSIM_WINDOW, 1), F.avg_pool2d(reference, SSIM_WINDOW, 1)
    unbiased = n / (n - 1)  # sample covariances, as in Wang et al.'s and scikit-image's implementation
    var_x = (F.avg_pool2d(image * image, SSIM_WINDOW, 1) - mean_x**2) * unbiased
    var_y = (F.avg_pool2d(reference * reference, SSIM_WINDOW, 1) - mean_y**2) * unbiased
    cov = (F.avg_pool2d(image * reference, SSIM_WINDOW, 1) - mean_x * mean_y) * unbiased
    return ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))


def ssim_torch(image: torch.Tensor, reference: torch.Tensor, data_range: torch.Tensor | float) -> torch.Tensor:
    """Mean SSIM per image of ``[batch, 1, H, W]`` tensors, unmasked (the loss). Returns ``[batch]``."""
    return ssim_map(image, reference, data_range).mean(dim=(1, 2, 3))


def object_mask(reference: np.ndarray) -> np.ndarray:
    """The object mask of a reference ``[slices, H, W]`` (module docstring)."""
    threshold = 0.1 * np.percentile(reference, 99)
    mask = np.stack([ndimage.binary_fill_holes(image > threshold) for image in reference])
    return ndimage.binary_dilation(mask, np.ones((1, 7, 7), bool)) if mask.any() else mask


def _as_slices(image: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, reference = np.asarray(image, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if image.shape != reference.shape:
        raise InputError(f"image shape {image.shape} differs from the reference shape {reference.shape}")
    if image.ndim not in (2, 3):
        raise InputError(f"expected a 2D image or a 3D volume, got shape {image.shape}")
    if not (np.all(np.isfinite(image)) and np.all(np.isfinite(reference))):
        raise InputError("images must be finite (no NaN/Inf)")
    if reference.max() <= 0:
        raise InputError("the reference has no positive signal: PSNR/SSIM undefined")
    return (image[None], reference[None]) if image.ndim == 2 else (image, reference)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB over the object mask (module docstring); inf when identical there."""
    image, reference = _as_slices(image, reference)
    inside = object_mask(reference)
    mse = float(np.mean((image[inside] - reference[inside]) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(reference.max() ** 2 / mse))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """SSIM over the object mask (module docstring), computed in float64."""
    import torch

    image, reference = _as_slices(image, reference)
    if min(image.shape[-2:]) < SSIM_WINDOW:
        raise InputError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels")
    values = ssim_map(torch.from_numpy(image[:, None]), torch.from_numpy(reference[:, None]), float(reference.max()))[
        :, 0
    ].numpy()
    half = SSIM_WINDOW // 2
    inside = object_mask(reference)[:, half:-half, half:-half]
    return float(values[inside].mean())


@dataclass(frozen=True)
class RoiSettings:
    """The ROI size a user sets (the module's ``roiSize``, ``fastmrrecon roi-stats --size``), in pixels."""

    roi_size: int = setting(
        4, "ROI side in pixels (a square in the point's slice, centred on it)", minimum=2, maximum=32, option="--size"
    )

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class RoiStats:
    """Mean and SD (ddof 1) of the three ROIs, SNR of ROI 1 and ROI 2, and CNR (module docstring)."""

    mean1: float
    sd1: float
    mean2: float
    sd2: float
    mean_background: float
    sd_background: float
    snr1: float
    snr2: float
    cnr: float


def roi_pixels(volume: np.ndarray, point_ijk: tuple[int, int, int], size: int = RoiSettings.roi_size) -> np.ndarray:
    """The ``size`` x ``size`` in-plane ROI of ``volume [k, j, i]`` at ``point_ijk`` (module docstring), float64;
    InputError for a size outside ``RoiSettings`` or an ROI that does not fit inside the image."""
    check_value(settings_field(RoiSettings, "roi_size"), size)
    volume = np.asarray(volume)
    if volume.ndim == 2:
        volume = volume[None]
    i, j, k = (int(round(value)) for value in point_ijk)
    slices, rows, columns = volume.shape
    low_i, low_j = i - size // 2, j - size // 2
    if not (0 <= k < slices) or not (0 <= i < columns and 0 <= j < rows):
        raise InputError(f"ROI point (i={i}, j={j}, k={k}) lies outside the image ({columns} x {rows} x {slices})")
    if low_i < 0 or low_j < 0 or low_i + size > columns or low_j + size > rows:
        raise InputError(
            f"a {size}x{size} ROI at (i={i}, j={j}) does not fit inside the image: move it away from the edge"
        )
    return volume[k, low_j : low_j + size, low_i : low_i + size].astype(np.float64)


def roi_statistics(
    volume: np.ndarray,
    roi1: tuple[int, int, int],
    roi2: tuple[int, int, int],
    background: tuple[int, int, int],
    size: int = RoiSettings.roi_size,
) -> RoiStats:
    """SNR and CNR of ``volume`` from three ROI points (i, j, k) (module docstring)."""
    first, second, noise = (roi_pixels(volume, point, size) for point in (roi1, roi2, background))
    sd_background = float(noise.std(ddof=1))
    if not np.isfinite(sd_background) or sd_background == 0:
        raise InputError("the background ROI has zero SD (no noise measured): place it in a noisy background region")
    mean1, mean2 = float(first.mean()), float(second.mean())
    return RoiStats(
        mean1,
        float(first.std(ddof=1)),
        mean2,
        float(second.std(ddof=1)),
        float(noise.mean()),
        sd_background,
        mean1 / sd_background,
        mean2 / sd_background,
        (mean1 - mean2) / sd_background,
    )
