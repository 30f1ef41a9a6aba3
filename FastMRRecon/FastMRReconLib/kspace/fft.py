"""The one home for centred, orthonormal 2D FFTs (k-space centre in the middle of the array).

Orthonormal scaling keeps noise levels equal in image and k-space: white noise of SD sigma per k-space
sample is white noise of SD sigma per pixel.
"""

from __future__ import annotations

import numpy as np

AXES = (-2, -1)


def fft2c(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes: image -> k-space."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=AXES), axes=AXES, norm="ortho"), axes=AXES)


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2D FFT over the last two axes: k-space -> image."""
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=AXES), axes=AXES, norm="ortho"), axes=AXES)
