"""Multi-coil k-space training examples for the unrolled network, simulated on the fly from magnitude objects.

Each example: a magnitude object (``KspaceExampleConfig.shape``: a random crop of a larger image, zero
padding of a smaller one) gets a smooth random phase (``kspace.simulate.smooth_phase``; for a share of them also the
phase structure of real images, ``kspace.simulate.tissue_phase``), 8-16 coils
(``kspace.coils``), complex Gaussian noise at an SNR drawn log-uniformly over ``snr_range`` (object mean /
noise SD; a share ``noise_free_fraction`` without noise), and a mask: 1D equispaced or variable-density lines
(``kspace.masks``, R 2-6) or a 2D variable-density Poisson disc (``kspace.poisson_disc``, R 2-8). Then, as at
inference (``model.kspace_reconstructor``), coil maps come from the calibration block of the undersampled data
and the noise SD is measured from the k-space edges. The target is the noise-free, fully sampled k-space
combined with the same maps (at R = 1 the SENSE solution is the exact coil combination ``S^H F^H y / sum |S|²``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from FastMRReconLib.kspace.coils import coil_sensitivities
from FastMRReconLib.kspace.fft import fft2c, ifft2c
from FastMRReconLib.kspace.masks import make_mask
from FastMRReconLib.kspace.poisson_disc import poisson_disc_mask
from FastMRReconLib.kspace.raw_kspace import MIN_CALIBRATION, box_coil_maps, calibration_box, kspace_noise_sd
from FastMRReconLib.kspace.simulate import object_mean, smooth_phase, tissue_phase

MASK_KINDS = ("equispaced", "variable-density", "poisson-2d")
#: The smallest share of fully sampled central lines of a 1D mask (``KspaceExampleConfig.calibration_lines``), and
#: the fewest lines a drawn share gives (``KspaceExampleConfig.calibration_share_range``).
MIN_CALIBRATION_SHARE = 0.08
FEWEST_DRAWN_CALIBRATION_LINES = MIN_CALIBRATION + 2


@dataclass(frozen=True)
class KspaceExampleConfig:
    """What varies between examples (module docstring)."""

    patch: int = 128
    #: Rows of the crop (the phase-encoding axis of 1D masks), None: ``patch`` (square). A crop with more rows
    #: than columns sees the aliasing of line masks at the displacement a full field of view gives it
    #: (rows / line spacing pixels) at the cost of fewer columns.
    patch_rows: int | None = None
    coil_range: tuple[int, int] = (8, 16)
    snr_range: tuple[float, float] = (5.0, 1000.0)
    noise_free_fraction: float = 0.05
    line_accelerations: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0)
    poisson_accelerations: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0, 8.0)
    #: Fully sampled central lines of 1D masks (at least this many, or ``MIN_CALIBRATION_SHARE`` of the lines).
    calibration_lines: int = 16
    #: When set, the share of fully sampled central lines of each 1D mask is drawn uniformly from this range
    #: instead (at least ``FEWEST_DRAWN_CALIBRATION_LINES``): protocols differ (fastMRI: 8% at R 4, 4% at R 8), and at a
    #: given R a smaller calibration block leaves wider gaps between the outer lines. The centre never exceeds the
    #: lines acquired (``kspace.masks``): at R 6 and a share near 16%, a mask is nearly all centre.
    calibration_share_range: tuple[float, float] | None = None
    #: Side of the fully sampled centre of 2D masks.
    calibration_block: int = 20
    #: The share of examples whose phase also has the structure real images have (``kspace.simulate.tissue_phase``:
    #: an offset on the brightest tissue, as fat has, and a fine random field); the others a smooth phase only.
    tissue_phase_share: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of an example."""
        return (self.patch if self.patch_rows is None else self.patch_rows, self.patch)


@dataclass
class KspaceExample:
    """One simulated acquisition: ``kspace`` and ``maps`` complex64 ``[coils, rows, columns]`` (maps from its
    calibration block), ``mask`` bool ``[rows, columns]``, the measured ``noise_sd``, the ``target`` complex64
    ``[rows, columns]`` (module docstring), ``acceleration`` and ``mask_kind``. Not normalised
    (``model.unrolled.normalised_batch`` does that, as at inference)."""

    kspace: np.ndarray
    maps: np.ndarray
    mask: np.ndarray
    noise_sd: float
    target: np.ndarray
    acceleration: float
    mask_kind: str


def fit_patch(image: np.ndarray, size: int | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``image`` cropped (at a random position) or zero-padded (centred) to ``size`` x ``size`` (or ``size``, a
    (rows, columns) shape)."""
    shape = (int(size[0]), int(size[1])) if isinstance(size, tuple) else (int(size), int(size))
    out = np.zeros(shape, np.float64)
    pieces = []
    for length, side in zip(image.shape, shape, strict=True):
        if length >= side:
            start = int(rng.integers(0, length - side + 1))
            pieces.append((slice(start, start + side), slice(0, side)))
        else:
            offset = (side - length) // 2
            pieces.append((slice(0, length), slice(offset, offset + length)))
    (source_r, target_r), (source_c, target_c) = pieces
    out[target_r, target_c] = image[source_r, source_c]
    return out


class MaskSampler:
    """Draws masks (``MASK_KINDS``) for one matrix size. 2D Poisson-disc masks take a fraction of a second to
    draw, so ``pool`` of them per acceleration are drawn once and reused, flipped at random."""

    def __init__(
        self, shape: tuple[int, int], config: KspaceExampleConfig, rng: np.random.Generator, pool: int = 6
    ) -> None:
        self.shape, self.config = shape, config
        self.poisson = {
            acceleration: [
                poisson_disc_mask(shape, acceleration, config.calibration_block, seed=int(rng.integers(2**31)))
                for _ in range(pool)
            ]
            for acceleration in config.poisson_accelerations
        }

    def __call__(self, kind: str, acceleration: float, rng: np.random.Generator) -> np.ndarray:
        """A ``bool[rows, columns]`` mask of ``kind``; 1D masks select rows (ky lines)."""
        if kind == "poisson-2d":
            mask = self.poisson[acceleration][int(rng.integers(len(self.poisson[acceleration])))]
            if rng.random() < 0.5:
                mask = mask[::-1]
            if rng.random() < 0.5:
                mask = mask[:, ::-1]
            return mask.copy()
        rows = self.shape[0]
        if self.config.calibration_share_range is None:
            centre = max(MIN_CALIBRATION_SHARE, self.config.calibration_lines / rows)
        else:
            shares = self.config.calibration_share_range
            low, high = (max(FEWEST_DRAWN_CALIBRATION_LINES, round(share * rows)) for share in shares)
            centre = int(rng.integers(low, high + 1)) / rows
        lines = make_mask(kind, acceleration, centre)(rows, seed=int(rng.integers(2**31)))
        return np.broadcast_to(lines[:, None], self.shape).copy()


def calibration_maps(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Coil maps from the calibration block of one acquisition, as at inference."""
    return box_coil_maps(kspace, calibration_box(mask))


def simulate_example(
    image: np.ndarray, rng: np.random.Generator, masks: MaskSampler, config: KspaceExampleConfig = KspaceExampleConfig()
) -> KspaceExample:
    """One training example from a magnitude ``image`` (module docstring)."""
    image = np.asarray(image, np.float64)
    obj = fit_patch(image, config.shape, rng)
    if rng.random() < 0.5:  # the other orientation of the anatomy relative to the phase-encoding axis
        obj = obj.T.copy() if config.patch_rows is None else fit_patch(image.T, config.shape, rng)
    shape = obj.shape
    phase = smooth_phase(shape, rng)
    if config.tissue_phase_share and rng.random() < config.tissue_phase_share:
        phase = phase + tissue_phase(obj, rng)
    complex_image = obj * np.exp(1j * phase)
    coils = int(rng.integers(config.coil_range[0], config.coil_range[1] + 1))
    maps_true = coil_sensitivities(shape, coils, seed=int(rng.integers(2**31)))
    kind = str(rng.choice(MASK_KINDS))
    accelerations = config.poisson_accelerations if kind == "poisson-2d" else config.line_accelerations
    acceleration = float(rng.choice(accelerations))
    mask = masks(kind, acceleration, rng)
    clean = fft2c(maps_true * complex_image)
    level = object_mean(obj)
    snr = float(np.exp(rng.uniform(*np.log(config.snr_range))))
    sigma = 0.0 if rng.random() < config.noise_free_fraction else level / snr
    noise = sigma * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    kspace = ((clean + noise) * mask).astype(np.complex64)
    maps = calibration_maps(kspace, mask)
    combined = np.sum(np.conj(maps) * ifft2c(clean), axis=0) / np.maximum(np.sum(np.abs(maps) ** 2, axis=0), 1e-6)
    target = np.where(np.any(maps != 0, axis=0), combined, 0).astype(np.complex64)
    return KspaceExample(kspace, maps, mask, kspace_noise_sd(kspace, mask), target, acceleration, kind)


def stack_examples(examples: Sequence[KspaceExample]) -> dict:
    """Batch arrays (numpy) of equally sized examples: kspace, maps (coils padded with zeros: no data, no
    sensitivity), mask, noise_sd, target."""
    coils = max(example.kspace.shape[0] for example in examples)

    def padded(array: np.ndarray) -> np.ndarray:
        return np.concatenate([array, np.zeros((coils - array.shape[0],) + array.shape[1:], array.dtype)])

    return {
        "kspace": np.stack([padded(e.kspace) for e in examples]),
        "maps": np.stack([padded(e.maps) for e in examples]),
        "mask": np.stack([e.mask for e in examples]).astype(np.float32),
        "noise_sd": np.array([e.noise_sd for e in examples], np.float32),
        "target": np.stack([e.target for e in examples]),
    }
