"""A placenta-like IVIM phantom: a pregnant abdomen in cross-section with known f, D, D* maps.

Compartments (label values in ``PlacentaPhantom.labels``): 1 placenta (a crescent along the anterior
uterine wall, lobular cotyledon-like variation of f, D, D*), 2 amniotic fluid (free water: f 0,
D 3.0e-3 mm²/s, long T2 so bright at b = 0), 3 fetus (an ellipsoidal trunk), 4 maternal tissue; fetus and
maternal tissue have a smooth 3D texture of S0 (+-25%, ~3 mm), as organs, fat and muscle give. S0 is 1 in the
placenta, and
the noise SD is S0_placenta / SNR, so "SNR 30 at b = 0" holds in the placenta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from FastMRICommon.geometry import VolumeGeometry
from IVIMEstimatorLib.diffusion_series import DiffusionSeries
from IVIMEstimatorLib.signal_model import ACQUIRED_BVALUES, add_rician_noise, ivim_signal

LABELS = {"placenta": 1, "amniotic fluid": 2, "fetus": 3, "maternal tissue": 4}
# (S0, f, D mm²/s, D* mm²/s) of the uniform compartments
_COMPARTMENTS = {
    "amniotic fluid": (1.6, 0.0, 3.0e-3, 50e-3),
    "fetus": (0.8, 0.15, 1.3e-3, 40e-3),
    "maternal tissue": (0.55, 0.08, 1.2e-3, 25e-3),
}


@dataclass
class PlacentaPhantom:
    """A noisy diffusion series and its truth: ``f``, ``D``, ``Dstar`` (mm²/s), ``S0`` maps ``[k, j, i]``,
    and ``labels`` (see ``LABELS``; 0 = air). Parameters are 0 in air."""

    series: DiffusionSeries
    f: np.ndarray
    D: np.ndarray
    Dstar: np.ndarray
    S0: np.ndarray
    labels: np.ndarray
    sigma: float


def _smooth_field(shape: tuple[int, ...], rng: np.random.Generator, sigma_voxels: tuple[float, ...]) -> np.ndarray:
    """Smooth random field scaled to [0, 1]."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_voxels)
    return (field - field.min()) / max(np.ptp(field), 1e-12)


def placenta_phantom(
    shape: tuple[int, int, int] = (15, 128, 128),
    spacing_mm: tuple[float, float, float] = (1.25, 1.25, 4.0),
    bvalues: np.ndarray = ACQUIRED_BVALUES,
    snr: float = 30.0,
    seed: int = 0,
) -> PlacentaPhantom:
    """Build the phantom on a ``shape = (slices, rows, columns)`` grid with ``spacing_mm`` (i, j, k) and
    simulate its signal at ``bvalues`` (s/mm²) with Rician noise at ``snr`` (placenta, b = 0)."""
    rng = np.random.default_rng(seed)
    slices, rows, columns = shape
    dx, dy, dz = spacing_mm
    z, y, x = np.meshgrid(
        (np.arange(slices) - (slices - 1) / 2) * dz,
        (np.arange(rows) - (rows - 1) / 2) * dy,
        (np.arange(columns) - (columns - 1) / 2) * dx,
        indexing="ij",
    )
    taper = np.sqrt(np.clip(1 - (z / 90.0) ** 2, 0.2, 1))  # ellipsoids: sections shrink away from the centre
    scale = min(rows * dy, columns * dx) / 160.0

    def ellipse(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
        return ((x - cx * scale) / (ax * scale * taper)) ** 2 + ((y - cy * scale) / (ay * scale * taper)) ** 2

    body, uterus = ellipse(0, 0, 74, 58) <= 1, ellipse(0, 6, 52, 42) <= 1
    # the fetal trunk: an ellipsoid that ends inside a 6-cm slab (real anatomy changes through-plane)
    fetus = ellipse(6, 14, 22, 16) + ((z - 12.0) / 36.0) ** 2 <= 1
    angle = np.arctan2(y - 6 * scale, x)  # anterior wall = negative y (rows run anterior to posterior)
    wall_depth = 1 - np.sqrt(ellipse(0, 6, 52, 42))
    placenta = uterus & ~fetus & (wall_depth < 0.45) & (np.abs(angle + np.pi / 2) < np.radians(75))
    labels = np.zeros(shape, dtype=np.uint8)
    labels[body] = LABELS["maternal tissue"]
    labels[uterus] = LABELS["amniotic fluid"]
    labels[fetus & uterus] = LABELS["fetus"]
    labels[placenta] = LABELS["placenta"]

    S0, f, D, Dstar = (np.zeros(shape) for _ in range(4))
    texture = 0.75 + 0.5 * _smooth_field(shape, rng, (3.0 / dz, 3.0 / dy, 3.0 / dx))  # organs, fat, muscle
    for name, (s0, ff, dd, ds) in _COMPARTMENTS.items():
        inside = labels == LABELS[name]
        S0[inside], f[inside], D[inside], Dstar[inside] = s0, ff, dd, ds
        if name != "amniotic fluid":
            S0[inside] *= texture[inside]
    lobes = (2.0 / dz, 6.0 / dy, 6.0 / dx)  # cotyledon-sized (~1.5 cm) variation
    inside = labels == LABELS["placenta"]
    S0[inside] = (0.9 + 0.2 * _smooth_field(shape, rng, lobes))[inside]
    f[inside] = (0.15 + 0.30 * _smooth_field(shape, rng, lobes))[inside]
    D[inside] = (1.5e-3 + 0.7e-3 * _smooth_field(shape, rng, lobes))[inside]
    Dstar[inside] = np.exp(np.log(30e-3) + np.log(4.0) * _smooth_field(shape, rng, lobes))[inside]

    sigma = 1.0 / snr
    clean = ivim_signal(bvalues, f, D, Dstar, S0)
    noisy = add_rician_noise(clean, sigma, rng).astype(np.float32)
    geometry = VolumeGeometry(
        spacing=(float(dx), float(dy), float(dz)),
        origin=(-(columns - 1) / 2 * dx, -(rows - 1) / 2 * dy, -(slices - 1) / 2 * dz),
    )
    series = DiffusionSeries(np.moveaxis(noisy, -1, 0), np.asarray(bvalues, float), geometry)
    return PlacentaPhantom(
        series,
        f.astype(np.float32),
        D.astype(np.float32),
        Dstar.astype(np.float32),
        S0.astype(np.float32),
        labels,
        sigma,
    )
