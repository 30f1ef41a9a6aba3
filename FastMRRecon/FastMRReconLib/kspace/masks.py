"""Cartesian undersampling masks: which phase-encoding lines are acquired.

A mask is a small callable object, ``mask(n_lines, seed) -> bool[n_lines]``, parameterised by the
acceleration R (>= 1, 1 = fully sampled; fractional values such as 1.5 allowed) and the fraction of central
lines that are always acquired (in (0, 1): the calibration region used for coil maps); both are required, as
in fastMRI's mask functions. The number of acquired lines is ``round(n_lines / R)``; the same seed gives the
same mask. Outside those domains an InputError is raised; the ranges and defaults a user chooses from are
``simulate.SimulationSettings``'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from FastMRICommon.errors import InputError


def central_lines(n_lines: int, count: int) -> np.ndarray:
    """``bool[n_lines]``, True on ``count`` contiguous lines around the k-space centre ``n_lines // 2`` (the
    centre of ``fft.fft2c``)."""
    mask = np.zeros(n_lines, dtype=bool)
    start = n_lines // 2 - count // 2
    mask[start : start + count] = True
    return mask


@dataclass(frozen=True)
class _LineMask:
    acceleration: float
    center_fraction: float

    def __post_init__(self) -> None:
        if not self.acceleration >= 1.0:
            raise InputError(f"acceleration must be at least 1 (1 = fully sampled), got {self.acceleration}")
        if not 0.0 < self.center_fraction < 1.0:
            raise InputError(f"centre fraction must be in (0, 1), got {self.center_fraction}")

    def __call__(self, n_lines: int, seed: int | None = None) -> np.ndarray:
        """``bool[n_lines]``, True on the acquired lines; the same ``seed`` gives the same mask."""
        raise NotImplementedError

    def _centre_and_outer(self, n_lines: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Boolean mask with the central block set, the outer candidate indices, and how many to add."""
        if n_lines < 4:
            raise InputError(f"need at least 4 phase-encoding lines, got {n_lines}")
        total = max(1, int(round(n_lines / self.acceleration)))
        centre = min(total, max(1, int(round(n_lines * self.center_fraction))))
        mask = central_lines(n_lines, centre)
        return mask, np.flatnonzero(~mask), total - centre


@dataclass(frozen=True)
class EquispacedMask(_LineMask):
    """Fully sampled centre plus equally spaced outer lines (a seeded random offset, as on scanners)."""

    def __call__(self, n_lines: int, seed: int | None = None) -> np.ndarray:
        mask, outer, remaining = self._centre_and_outer(n_lines)
        if remaining > 0:
            step = outer.size / remaining
            offset = np.random.default_rng(seed).uniform(0, step)
            mask[outer[np.floor(offset + step * np.arange(remaining)).astype(int)]] = True
        return mask


@dataclass(frozen=True)
class VariableDensityMask(_LineMask):
    """Fully sampled centre plus outer lines drawn at random, denser near the centre of k-space.

    The draw probability falls as ``(1 - |k| / k_max) ** decay`` (``decay`` 0 = uniform random).
    """

    decay: float = 2.0

    def __call__(self, n_lines: int, seed: int | None = None) -> np.ndarray:
        mask, outer, remaining = self._centre_and_outer(n_lines)
        if remaining > 0:
            distance = np.abs(outer - n_lines // 2) / (n_lines / 2)
            weight = np.clip(1.0 - distance, 1e-3, None) ** self.decay
            chosen = np.random.default_rng(seed).choice(outer, size=remaining, replace=False, p=weight / weight.sum())
            mask[chosen] = True
        return mask


MASKS = {"equispaced": EquispacedMask, "variable-density": VariableDensityMask}


def make_mask(kind: str, acceleration: float, center_fraction: float) -> _LineMask:
    """The mask called ``kind`` (a name of ``MASKS``) for ``acceleration`` and ``center_fraction`` (module
    docstring); InputError for an unknown name or values outside their domains."""
    if kind not in MASKS:
        raise InputError(f"unknown mask {kind!r}; choose one of {', '.join(MASKS)}")
    return MASKS[kind](acceleration=acceleration, center_fraction=center_fraction)
