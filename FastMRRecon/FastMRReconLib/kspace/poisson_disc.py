"""2D variable-density Poisson-disc sampling of a k-space plane (as BART's ``poisson`` and sigpy's
``poisson`` draw them: Lustig, Donoho and Pauly, "Sparse MRI", MRM 58, 2007; Vasanawala et al., Radiology
2011): samples no closer to each other than a radius that grows with the distance from the k-space centre,
plus a fully sampled central calibration block.

Drawn by dart throwing: candidate positions in random order, each accepted when no accepted sample lies within
its radius; the radius scale is set by bisection so that about ``round(rows * columns / acceleration)`` samples
are acquired, and the count is then made exact by adding (or removing) samples at random, weighted by the
density (the count jumps with the radius where discs are a pixel or two wide).
"""

from __future__ import annotations

import numpy as np

from FastMRICommon.errors import InputError

#: The radius grows linearly from the centre to the edge of k-space by this factor (variable density).
DENSITY_GROWTH = 3.0


def _throw(
    shape: tuple[int, int], radius_scale: float, order: np.ndarray, distance: np.ndarray, calibration: np.ndarray
) -> np.ndarray:
    rows, columns = shape
    blocked = np.zeros((rows, columns), bool)
    mask = calibration.copy()
    discs: dict[int, np.ndarray] = {}
    for flat in order:
        r, c = divmod(int(flat), columns)
        if blocked[r, c] or mask[r, c]:
            continue
        mask[r, c] = True
        radius = radius_scale * (1.0 + DENSITY_GROWTH * distance[r, c])
        size = int(np.floor(radius))
        if size < 1:
            continue
        if size not in discs:
            y, x = np.mgrid[-size : size + 1, -size : size + 1]
            discs[size] = y**2 + x**2 < radius**2
        disc = discs[size]
        r0, r1, c0, c1 = r - size, r + size + 1, c - size, c + size + 1
        clipped = disc[
            max(0, -r0) : disc.shape[0] - max(0, r1 - rows), max(0, -c0) : disc.shape[1] - max(0, c1 - columns)
        ]
        blocked[max(0, r0) : min(rows, r1), max(0, c0) : min(columns, c1)] |= clipped
    return mask


def poisson_disc_mask(
    shape: tuple[int, int], acceleration: float, calibration: int = 24, seed: int | None = None
) -> np.ndarray:
    """``bool[rows, columns]``: a variable-density Poisson-disc mask (module docstring) of ``shape`` with about
    ``rows * columns / acceleration`` samples, including a ``calibration`` x ``calibration`` fully sampled
    centre (clipped to the matrix). ``acceleration`` from 2 to 16."""
    rows, columns = shape
    if not 2.0 <= acceleration <= 16.0:
        raise InputError(f"a 2D Poisson-disc mask needs an acceleration from 2 to 16, got {acceleration}")
    if min(rows, columns) < 8:
        raise InputError(f"a 2D mask needs at least 8 x 8 samples, got {rows} x {columns}")
    target = int(round(rows * columns / acceleration))
    calibration_mask = np.zeros(shape, bool)
    size_r, size_c = min(calibration, rows), min(calibration, columns)
    calibration_mask[
        rows // 2 - size_r // 2 : rows // 2 - size_r // 2 + size_r,
        columns // 2 - size_c // 2 : columns // 2 - size_c // 2 + size_c,
    ] = True
    if calibration_mask.sum() >= target:
        raise InputError(
            f"the {size_r} x {size_c} calibration block alone exceeds the {target} samples of R = {acceleration:g}"
        )
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(
        (np.arange(rows) - rows // 2) / (rows / 2), (np.arange(columns) - columns // 2) / (columns / 2), indexing="ij"
    )
    distance = np.minimum(np.sqrt(x**2 + y**2) / np.sqrt(2), 1.0)
    order = rng.permutation(rows * columns)
    low, high = 0.0, 4.0 * np.sqrt(acceleration)
    mask = _throw(shape, high, order, distance, calibration_mask)
    for _ in range(20):
        middle = (low + high) / 2
        mask = _throw(shape, middle, order, distance, calibration_mask)
        count = int(mask.sum())
        if abs(count - target) <= 0.02 * target:
            break
        if count > target:
            low = middle
        else:
            high = middle
    weight = 1.0 / (1.0 + DENSITY_GROWTH * distance) ** 2  # the density the radii give
    count = int(mask.sum())
    if count < target:
        free = np.flatnonzero(~mask)
        chosen = rng.choice(free, target - count, replace=False, p=weight.ravel()[free] / weight.ravel()[free].sum())
        mask.ravel()[chosen] = True
    elif count > target:
        taken = np.flatnonzero(mask & ~calibration_mask)
        inverse = 1.0 / weight.ravel()[taken]
        mask.ravel()[rng.choice(taken, count - target, replace=False, p=inverse / inverse.sum())] = False
    return mask
