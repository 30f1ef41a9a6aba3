"""Receive-coil sensitivities of a multi-channel head array.

Loops sit on a ring around the field of view; each one's sensitivity falls with distance and carries the
phase of its position angle (the classic birdcage/loop-array model), so single-coil images are strongly
shaded and their phases differ. Maps are normalised so that their root-sum-of-squares is 1 everywhere, as
after a scanner's prescan normalisation: the combined image is then the object itself.
"""

from __future__ import annotations

import numpy as np

from FastMRICommon.errors import InputError


def coil_sensitivities(
    shape: tuple[int, int], n_coils: int = 8, ring_radius: float = 1.3, seed: int | None = None
) -> np.ndarray:
    """Complex sensitivities ``[n_coils, rows, columns]`` with RSS 1 everywhere.

    ``ring_radius`` is the loops' distance from the centre in units of the half field of view; a seed jitters
    each loop's angle, distance and height so that every simulated scan has its own array.
    """
    if n_coils < 1:
        raise InputError(f"need at least one coil, got {n_coils}")
    rows, columns = shape
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, columns), indexing="ij")
    angles = 2 * np.pi * np.arange(n_coils) / n_coils + rng.uniform(-0.15, 0.15, n_coils)
    radii = ring_radius * rng.uniform(0.9, 1.1, n_coils)
    heights = rng.uniform(0.3, 0.6, n_coils)  # loop distance out of the slice plane, avoids singularities
    maps = np.empty((n_coils, rows, columns), dtype=np.complex64)
    for index, (angle, radius, height) in enumerate(zip(angles, radii, heights)):
        dx, dy = x - radius * np.cos(angle), y - radius * np.sin(angle)
        magnitude = 1.0 / np.sqrt(dx**2 + dy**2 + height**2) ** 1.5
        maps[index] = magnitude * np.exp(1j * (np.arctan2(dy, dx) - angle))
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    return maps
