"""Retrospective simulation of an accelerated multi-coil Cartesian acquisition from a magnitude image.

For each 2D slice: give the image a smooth background phase, multiply by coil sensitivities, Fourier
transform, keep the lines of an undersampling mask, add complex Gaussian noise whose SD shrinks with the
number of averages, and reconstruct conventionally (CG-SENSE, or zero-filled root-sum-of-squares). The noise level
is set by ``snr``: mean signal inside the object over the noise SD of a fully sampled single-average image.

``resolution`` < 1 acquires only that central fraction of k-space along an axis and zero-fills the rest, as
scanners reconstruct on a finer grid than they acquire (interpolation to a larger matrix, lower phase
resolution): the image then shows truncation (Gibbs) ringing at edges and spatially correlated noise, as
real scanner images do. Signal and noise outside the acquired region are zero; the noise SD per k-space
sample is unchanged, so the image noise SD falls by the square root of the acquired fraction.

Input (``check_magnitude``, also applied by the reconstruction): a magnitude image, >= 0. Small negative values
are tolerated: zero-mean noise in the background, or overshoot from interpolation at edges; an image whose
minimum is below -``NEGATIVE_TOLERANCE`` (10%) of its 99th percentile is refused as not a magnitude image (a
real part, phase or difference image). Values beyond +-``MAX_MAGNITUDE`` (1e12, far beyond any scanner's
range) are refused: k-space, images and results are float32 (largest 3.4e38), and squares and their sums
over a volume (coil combination, CG-SENSE, noise estimates) must stay finite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.settings import check_settings, setting
from FastMRReconLib.kspace.coils import coil_sensitivities
from FastMRReconLib.kspace.fft import fft2c, ifft2c
from FastMRReconLib.kspace.masks import MASKS, central_lines, make_mask
from FastMRReconLib.kspace.sense import sense_reconstruction

#: Most negative value accepted in a magnitude image, as a fraction of its 99th percentile (module docstring).
NEGATIVE_TOLERANCE = 0.10
#: Largest absolute value accepted in an image (module docstring).
MAX_MAGNITUDE = 1e12


def check_magnitude(image: np.ndarray) -> None:
    """One-line InputError for a real, finite ``image`` that is not a magnitude image or whose values float32
    cannot carry (module docstring)."""
    largest = float(np.max(np.abs(image)))
    if largest > MAX_MAGNITUDE:
        raise InputError(
            f"the image has values beyond ±{MAX_MAGNITUDE:.0e} (largest {largest:.3g}), where float32 "
            "arithmetic overflows: rescale the image"
        )
    minimum, high = float(np.min(image)), float(np.percentile(image, 99))
    if minimum < -NEGATIVE_TOLERANCE * max(high, 0.0):
        raise InputError(
            f"the image has negative values (minimum {minimum:.3g}, below -{NEGATIVE_TOLERANCE:.0%} "
            f"of its 99th percentile {high:.3g}): give a magnitude image (>= 0), not a real part, phase "
            "or difference image"
        )


#: Coil combinations of :func:`simulate_volume`: CG-SENSE with calibration coil maps, or zero-filled
#: root-sum-of-squares.
COMBINATIONS = ("sense", "rss")


@dataclass(frozen=True)
class SimulationSettings:
    """What a user sets for a simulated accelerated scan: the module's *Simulate* section (its parameter node
    fields are these, in camelCase) and ``fastmrrecon simulate`` (its options). Each field holds its default,
    its range or choices and its help (``FastMRICommon.settings``); making an instance checks every value
    (InputError naming the setting). :meth:`acquisition` gives the :class:`AcquisitionConfig` to simulate with.
    The ranges are what the module and the command line offer; the simulation itself accepts more (any
    R >= 1, an infinite SNR: :class:`AcquisitionConfig`), which training and benchmarks use."""

    acceleration: float = setting(
        2.0,
        "undersampling factor R (1 = fully sampled): acquired phase-encoding lines = all lines / R",
        minimum=1.0,
        maximum=16.0,
    )
    mask: str = setting(
        "equispaced",
        "line pattern: equally spaced lines, or random ones denser near the k-space centre",
        choices=tuple(MASKS),
    )
    center_fraction: float = setting(
        0.08,
        "fraction of the central phase-encoding lines always acquired: the calibration region of the coil maps",
        minimum=0.01,
        maximum=0.5,
    )
    coils: int = setting(8, "receive coils", minimum=1, maximum=32)
    averages: int = setting(1, "signal averages: the noise SD falls with their square root", minimum=1, maximum=8)
    snr: float = setting(
        30.0, "object mean / noise SD of a fully sampled single-average image", minimum=1.0, maximum=1e6
    )
    resolution_rows: float = setting(
        1.0,
        "acquired fraction of k-space along each slice's rows (1 = all), "
        "zero-filled to the matrix as scanners interpolate",
        minimum=0.1,
        maximum=1.0,
    )
    resolution_columns: float = setting(
        1.0,
        "acquired fraction of k-space along each slice's columns (1 = all), zero-filled like the rows",
        minimum=0.1,
        maximum=1.0,
    )
    combine: str = setting(
        "sense",
        "coil combination: CG-SENSE with calibration coil maps (what the network "
        "expects), or zero-filled root-sum-of-squares",
        choices=COMBINATIONS,
    )
    seed: int = setting(
        0, "random seed: the same seed gives the same mask, coils, phase and noise", minimum=0, maximum=2**31 - 1
    )

    def __post_init__(self) -> None:
        check_settings(self)

    def acquisition(self) -> AcquisitionConfig:
        """The simulation these settings describe (``combine`` is :func:`simulate_volume`'s argument)."""
        return AcquisitionConfig(
            acceleration=self.acceleration,
            mask=self.mask,
            center_fraction=self.center_fraction,
            coils=self.coils,
            averages=self.averages,
            snr=self.snr,
            resolution=(self.resolution_rows, self.resolution_columns),
            seed=self.seed,
        )


@dataclass(frozen=True)
class AcquisitionConfig:
    """How the accelerated scan is simulated; defaults are :class:`SimulationSettings`' (one home).

    acceleration: undersampling factor R (>= 1; 1 = fully sampled); mask: a name of ``masks.MASKS``;
    center_fraction: fraction of central lines always acquired, in (0, 1); coils: receive channels (>= 1);
    averages: signal averages (>= 1; noise SD / sqrt(averages)); snr: object mean / noise SD at one average,
    fully sampled (> 0; ``inf`` = noise-free); phase_encode_axis: array axis of the 2D slice that is phase
    encoded (0 = rows, 1 = columns); resolution: acquired fraction of k-space along (rows, columns), each in
    (0, 1] (module docstring; 1 = all); seed: an integer >= 0 that makes masks, coils, phase and noise
    reproducible. Values outside these domains raise InputError; the narrower ranges a user may choose are
    :class:`SimulationSettings`'.
    """

    acceleration: float = SimulationSettings.acceleration
    mask: str = SimulationSettings.mask
    center_fraction: float = SimulationSettings.center_fraction
    coils: int = SimulationSettings.coils
    averages: int = SimulationSettings.averages
    snr: float = SimulationSettings.snr
    phase_encode_axis: int = 0
    resolution: tuple[float, float] = (SimulationSettings.resolution_rows, SimulationSettings.resolution_columns)
    seed: int = SimulationSettings.seed

    def __post_init__(self) -> None:
        if self.averages < 1:
            raise InputError(f"averages must be >= 1, got {self.averages}")
        if self.coils < 1:
            raise InputError(f"coils must be >= 1, got {self.coils}")
        if not self.snr > 0:
            raise InputError(f"SNR must be > 0, got {self.snr}")
        if self.phase_encode_axis not in (0, 1):
            raise InputError(f"phase_encode_axis must be 0 or 1, got {self.phase_encode_axis}")
        if len(self.resolution) != 2 or not all(0 < fraction <= 1 for fraction in self.resolution):
            raise InputError(f"resolution must be two fractions in (0, 1], got {self.resolution}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"seed must be an integer >= 0, got {self.seed!r}")
        make_mask(self.mask, self.acceleration, self.center_fraction)  # validates the mask parameters

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SimulatedSlice:
    """One simulated 2D acquisition: ``kspace [coils, rows, columns]`` (zeros where not acquired),
    ``mask [rows, columns]`` (True where acquired), the true ``coil_maps`` and the complex ``image``."""

    kspace: np.ndarray
    mask: np.ndarray
    coil_maps: np.ndarray
    image: np.ndarray


def smooth_phase(shape: tuple[int, int], rng: np.random.Generator, strength: float = np.pi) -> np.ndarray:
    """A random low-order (quadratic) phase map in radians, within about +-``strength``."""
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    coefficients = rng.uniform(-1, 1, 6) * strength / 3
    return (
        coefficients[0]
        + coefficients[1] * x
        + coefficients[2] * y
        + coefficients[3] * x * y
        + coefficients[4] * x**2
        + coefficients[5] * y**2
    )


def tissue_phase(magnitude: np.ndarray, rng: np.random.Generator, max_texture: float = 0.5) -> np.ndarray:
    """Phase in radians that real images carry beyond a smooth one (``smooth_phase``), for a magnitude image:
    an offset on its brightest structures, any angle (fat precesses 3.4 ppm slower than water, so at a given echo
    time fat and water differ in phase by any angle: Dixon, Radiology 1984; fat is the brightest tissue of T1w
    scans), edges softened over about a pixel; plus a random field of a few pixels' scale (susceptibility near air
    and bone, vessels), of SD up to ``max_texture``. Coil maps from the calibration block absorb a smooth phase,
    not these: a real slice reconstructed with such maps keeps them (a phase gradient of 0.07 rad per pixel at the
    median, 0.8 at the 99th percentile, in the benchmark's real brain slice; 0.01 / 0.02 for ``smooth_phase``)."""
    from scipy import ndimage

    inside = object_pixels(magnitude)
    level = np.percentile(inside, rng.uniform(70, 97)) if inside.size else np.percentile(magnitude, 99)
    bright = ndimage.gaussian_filter((magnitude >= level).astype(np.float64), 1.0)
    field = ndimage.gaussian_filter(rng.standard_normal(magnitude.shape), rng.uniform(1.5, 6.0))
    field *= rng.uniform(0, max_texture) / max(float(field.std()), 1e-12)
    return rng.uniform(-np.pi, np.pi) * bright + field


def acquired_region(shape: tuple[int, int], resolution: tuple[float, float]) -> np.ndarray:
    """True on the central ``resolution`` fraction of each k-space axis of ``shape`` (at least 8 samples)."""
    rows, columns = (
        central_lines(size, min(size, max(8, int(round(fraction * size))))) for size, fraction in zip(shape, resolution)
    )
    return np.logical_and.outer(rows, columns)


def object_region(image: np.ndarray) -> np.ndarray:
    """True on the object's pixels: those whose magnitude is above 10% of the 99th percentile (none in a blank
    image)."""
    magnitude = np.abs(image)
    return magnitude > 0.1 * np.percentile(magnitude, 99)


def object_pixels(image: np.ndarray) -> np.ndarray:
    """The magnitudes of the object's pixels (``object_region``)."""
    return np.abs(image)[object_region(image)]


def object_mean(image: np.ndarray) -> float:
    """Mean magnitude over the object (``object_pixels``); the SNR reference."""
    inside = object_pixels(image)
    if inside.size == 0:
        raise InputError("the image is empty (no signal above background)")
    return float(inside.mean())


def simulate_slice(
    image: np.ndarray, config: AcquisitionConfig, rng: np.random.Generator, noise_reference: float | None = None
) -> SimulatedSlice:
    """Simulate the accelerated acquisition of one 2D magnitude ``image`` (see the module docstring).

    ``noise_reference`` is the signal level the SNR refers to (default: this slice's object mean); pass the
    volume's so that all slices of a volume share one noise level.
    """
    if image.ndim != 2:
        raise InputError(f"simulate_slice needs a 2D image, got shape {image.shape}")
    if np.iscomplexobj(image) or not np.all(np.isfinite(image)):
        raise InputError("the image must be real and finite")
    reference = object_mean(image) if noise_reference is None else noise_reference
    complex_image = image * np.exp(1j * smooth_phase(image.shape, rng))
    maps = coil_sensitivities(image.shape, config.coils, seed=int(rng.integers(2**31)))
    lines = make_mask(config.mask, config.acceleration, config.center_fraction)(
        image.shape[config.phase_encode_axis], seed=int(rng.integers(2**31))
    )
    mask = (lines[:, None] if config.phase_encode_axis == 0 else lines[None, :]) & acquired_region(
        image.shape, config.resolution
    )
    sigma = reference / (config.snr * np.sqrt(config.averages))
    # SD sigma in each of the real and imaginary channels (the Rician convention): magnitude SNR = mean / sigma
    noise = sigma * (rng.standard_normal(maps.shape) + 1j * rng.standard_normal(maps.shape))
    kspace = (fft2c(maps * complex_image) + noise) * mask
    return SimulatedSlice(kspace.astype(np.complex64), mask, maps, complex_image.astype(np.complex64))


def rss_combine(coil_images: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over the coil axis (axis 0)."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=0))


def zero_filled_rss(kspace: np.ndarray) -> np.ndarray:
    """Conventional reconstruction: inverse FFT of the zero-filled k-space, root-sum-of-squares over coils."""
    return rss_combine(ifft2c(kspace))


def simulate_volume(
    volume: np.ndarray,
    config: AcquisitionConfig,
    combine: str = SimulationSettings.combine,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    kspace_out: list | None = None,
) -> np.ndarray:
    """Simulate the accelerated scan of ``volume[k, j, i]`` slice by slice (2D k-space per ``k`` slice) and
    return its conventional reconstruction, same shape, float32, on the input's intensity scale (the volume must
    be a magnitude image: ``check_magnitude``):
    ``combine`` "sense" (CG-SENSE with calibration coil maps, what a scanner delivers and the network's
    input) or "rss" (zero-filled root-sum-of-squares, aliasing left in). When ``kspace_out`` is a list, each
    slice's acquired k-space ``[coils, ky = j, kx = i]`` (complex64, zeros where not acquired) is appended."""
    if combine not in COMBINATIONS:
        raise InputError(f"unknown coil combination {combine!r}; choose one of {', '.join(COMBINATIONS)}")
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise InputError(f"expected a 3D volume [k, j, i], got shape {volume.shape}")
    if np.iscomplexobj(volume) or not np.all(np.isfinite(volume)):
        raise InputError("the volume must be real and finite (no NaN/Inf)")
    check_magnitude(volume)
    if np.ptp(volume) == 0:
        raise InputError("the volume is constant: nothing to simulate")
    rng = np.random.default_rng(config.seed)
    reference = object_mean(volume)
    result = np.empty(volume.shape, dtype=np.float32)
    for index, image in enumerate(volume):
        raise_if_cancelled(cancel)
        scan = simulate_slice(image.astype(float), config, rng, reference)
        if kspace_out is not None:
            kspace_out.append(scan.kspace)
        result[index] = (
            sense_reconstruction(scan.kspace, scan.mask, config.phase_encode_axis)
            if combine == "sense"
            else zero_filled_rss(scan.kspace)
        )
        report(progress, (index + 1) / volume.shape[0], f"simulated slice {index + 1}/{volume.shape[0]}")
    return result
