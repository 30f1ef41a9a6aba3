"""Training pairs for the reconstruction network: accelerated AV=1 scans and their fully sampled AV=2
references, synthesised from head tissue maps with MR physics.

Each pair is one 2D slice: a random subject, orientation (axial, coronal, sagittal, from ``orientations``;
recorded with the pair) and slice through the head; the 1 mm tissue fractions are resampled to a pixel size drawn
log-uniformly from ``pixel_range``
(0.8-3 mm: from 3D T1w to 2D EPI resolutions, so that low-resolution scans, where every structure is a few
pixels wide, are seen too), rotated (+-10 degrees) and elastically deformed, over a field of view of
160-256 mm per axis (matrix = field of view / pixel size, at least 48); a contrast (T1w, T2w, PD,
FLAIR) with TR, TE and TI jittered by +-20% and per-tissue PD/T1/T2 by +-10%, or a random one (each tissue's
signal drawn from U(0, 1), ``RANDOM_CONTRAST``: domain randomisation), a bias field (+-30%) and
texture (relative SD drawn from ``texture_range``) give the magnitude image. That image is scanned twice: by
the reference protocol, fully sampled with two averages (the reference), and accelerated (R from
``accelerations``, equispaced or variable-density lines, either phase-encoding direction) with one average,
reconstructed by CG-SENSE with
coil maps from its own calibration lines (the network's input). Both are combined the same way
(SENSE; at R = 1 this is the optimal complex coil combination a scanner applies): a root-sum-of-squares
reference would carry a noise floor in dark tissue and air that no SENSE image has. SNR (object mean / noise SD at one
average) is drawn log-uniformly from ``snr_range`` (15-90: from noisy scans to clean ones, which the network
must leave alone), coils from 8-16. Both scans may acquire only a central fraction of k-space per axis
(``resolution_range``; default all of it), zero-filled to the image grid as scanners interpolate: truncation
ringing and correlated noise, as in real images.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback, raise_if_cancelled, report
from FastMRReconLib.anatomy.head_synthesis import (
    PROTOCOLS,
    Protocol,
    TissueMaps,
    label_fractions,
    mni152_tissue_maps,
    random_contrast,
    read_label_map,
    shared_synthseg_dir,
    synthesize,
)
from FastMRReconLib.anatomy.real_anatomy import RealImage, draw_slice
from FastMRReconLib.kspace.fft import fft2c
from FastMRReconLib.kspace.masks import MASKS
from FastMRReconLib.kspace.sense import sense_reconstruction
from FastMRReconLib.kspace.simulate import (
    AcquisitionConfig,
    SimulationSettings,
    acquired_region,
    object_mean,
    simulate_slice,
)

#: Slice orientations, in the order of the axis of the ``[k, j, i]`` (axial LPS) head volume they cut.
ORIENTATIONS = ("axial", "coronal", "sagittal")
#: Fields of view (mm) per image axis, drawn independently.
FIELDS_OF_VIEW_MM = (160, 176, 192, 208, 224, 240, 256)
#: Smallest matrix (pixels per axis) of a training image.
MIN_MATRIX = 48
#: Samples per pixel side when warping tissue fractions (``_warp``).
SUPERSAMPLING = 3
#: Targets of a pair (``PairConfig.reference``).
REFERENCES = ("AV2", "noise-free")
#: The contrast name of pairs whose object is a real image (``real_anatomy``).
REAL_CONTRAST = "real"
#: The contrast name of domain-randomised pairs (``head_synthesis.random_contrast``: each tissue's signal
#: drawn at random), besides the protocols of ``PROTOCOLS``.
RANDOM_CONTRAST = "random"


@dataclass(frozen=True)
class PairConfig:
    """What varies between pairs (module docstring). ``contrasts``: names of ``PROTOCOLS`` and/or
    ``RANDOM_CONTRAST``."""

    contrasts: tuple[str, ...] = tuple(PROTOCOLS)
    orientations: tuple[str, ...] = ORIENTATIONS
    accelerations: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0)
    snr_range: tuple[float, float] = (15.0, 90.0)
    coil_range: tuple[int, int] = (8, 16)
    texture_range: tuple[float, float] = (0.0, 0.06)
    center_fraction: float = SimulationSettings.center_fraction
    pixel_range: tuple[float, float] = (0.8, 3.0)
    #: Acquired fraction of k-space per image axis (``AcquisitionConfig.resolution``: ringing, correlated
    #: noise), uniform and independent per axis; (1, 1) draws nothing, so earlier seeds keep their pairs.
    resolution_range: tuple[float, float] = (1.0, 1.0)
    #: The target: "AV2" (the fully sampled two-average scan, noisy) or "noise-free" (SENSE of the same
    #: scan's fully sampled k-space without noise: the network learns to remove all of the noise).
    reference: str = "AV2"
    #: Share of pairs scanned without noise (the network must return those unchanged at R = 1); 0 draws
    #: nothing, so earlier seeds keep their pairs.
    noise_free_fraction: float = 0.0


@dataclass
class SlicePair:
    """One training example: ``input`` (AV=1, accelerated, SENSE), ``reference`` (AV=2, fully sampled, SENSE),
    both float32 ``[H, W]``, and how it was made (``orientation`` is "unknown" in files written before it was
    recorded)."""

    input: np.ndarray
    reference: np.ndarray
    contrast: str
    acceleration: float
    subject: str
    orientation: str = "unknown"


class HeadSource:
    """One subject's tissue fractions, as 3D arrays ``[k, j, i]`` (1 mm) from which slices are drawn."""

    def __init__(
        self, name: str, fractions: dict[str, np.ndarray] | None = None, labels: np.ndarray | None = None
    ) -> None:
        self.name, self._fractions, self._labels = name, fractions, labels

    def _fraction_maps(self) -> dict[str, np.ndarray]:
        """The 3D tissue fractions of a source made without labels."""
        if self._fractions is None:
            raise ValueError(f"head source {self.name!r} has neither tissue fractions nor labels")
        return self._fractions

    @classmethod
    def synthseg(cls, path: Path) -> HeadSource:
        return cls(path.name, labels=read_label_map(path)[0])

    @classmethod
    def mni152(cls) -> HeadSource:
        return cls("MNI152", fractions=mni152_tissue_maps().fractions)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._labels.shape if self._labels is not None else next(iter(self._fraction_maps().values())).shape

    def head_mask(self) -> np.ndarray:
        if self._labels is not None:
            return self._labels > 0
        return _total(self._fraction_maps().values()) > 0.5

    def slice_fractions(self, axis: int, index: int) -> dict[str, np.ndarray]:
        """Tissue fractions of one 2D slice (partial volume: 0.5 mm Gaussian on label maps)."""
        if self._labels is not None:
            return label_fractions(np.take(self._labels, index, axis=axis), 0.5)
        return {name: np.take(fraction, index, axis=axis) for name, fraction in self._fraction_maps().items()}


def _total(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """The element-wise sum of ``arrays``, added in order (as ``sum``, which types its result as maybe 0)."""
    return np.asarray(sum(arrays))


def synthseg_sources(split: str) -> list[HeadSource]:
    """The SynthSeg subjects of ``split``: "train" (first 80% by file name) or "validation" (last 20%);
    empty when ../shared is absent."""
    folder = shared_synthseg_dir()
    if folder is None:
        return []
    paths = sorted(folder.glob("*.nii.gz"))
    cut = int(round(0.8 * len(paths)))
    chosen = paths[:cut] if split == "train" else paths[cut:]
    return [HeadSource.synthseg(path) for path in chosen]


def _warp(
    fractions: dict[str, np.ndarray], rng: np.random.Generator, shape: tuple[int, int], pixel_mm: float
) -> dict[str, np.ndarray]:
    """Resample the slice's 1 mm fractions to ``pixel_mm`` pixels on a ``shape`` matrix centred on the head,
    rotated and elastically deformed.

    Each pixel is the mean of ``SUPERSAMPLING`` x ``SUPERSAMPLING`` nearest-neighbour samples (the tissue
    fractions a pixel covers), so tissue boundaries stay as sharp as the pixel grid, as in a scan; plain
    interpolation would blur every edge by about a pixel and teach the network to blur real edges."""
    first = next(iter(fractions.values()))
    head = _total(fractions.values())
    centre = np.array(ndimage.center_of_mass(head)) if head.sum() > 0 else (np.array(first.shape) - 1) / 2
    zoom = 1.0 / pixel_mm
    angle = np.radians(rng.uniform(-10, 10))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    fine = SUPERSAMPLING
    rows, columns = np.meshgrid(
        (np.arange(shape[0] * fine) + 0.5) / fine - shape[0] / 2,
        (np.arange(shape[1] * fine) + 0.5) / fine - shape[1] / 2,
        indexing="ij",
    )
    source = np.einsum("ab,bij->aij", rotation / zoom, np.stack([rows, columns])) + centre[:, None, None]
    strength = rng.uniform(0, 3.0)  # elastic displacement SD, pixels, smooth over ~16 pixels
    for axis in range(2):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), 16.0)
        source[axis] += strength * np.kron(field / max(field.std(), 1e-9), np.ones((fine, fine)))
    return {
        name: ndimage.map_coordinates(fraction, source, order=0, mode="constant", cval=0.0)
        .reshape(shape[0], fine, shape[1], fine)
        .mean(axis=(1, 3))
        .astype(np.float32)
        for name, fraction in fractions.items()
    }


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A value drawn log-uniformly between ``bounds``."""
    return float(np.exp(rng.uniform(*np.log(bounds))))


def _jittered(protocol: Protocol, rng: np.random.Generator) -> Protocol:
    scale = rng.uniform(0.8, 1.2, 3)
    return replace(
        protocol,
        tr_ms=protocol.tr_ms * scale[0],
        te_ms=protocol.te_ms * scale[1],
        ti_ms=None if protocol.ti_ms is None else protocol.ti_ms * scale[2],
    )


def scan_pair(
    image: np.ndarray, acceleration: float, rng: np.random.Generator, config: PairConfig = PairConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """(AV=1 accelerated SENSE input, AV=2 fully sampled SENSE reference) of one magnitude ``image``."""
    if config.reference not in REFERENCES:
        raise InputError(f"reference must be one of {', '.join(REFERENCES)}, not {config.reference!r}")
    accelerated = AcquisitionConfig(
        acceleration=acceleration,
        mask=str(rng.choice(sorted(MASKS))),
        center_fraction=config.center_fraction,
        coils=int(rng.integers(config.coil_range[0], config.coil_range[1] + 1)),
        averages=1,
        snr=(
            np.inf
            if config.noise_free_fraction and rng.random() < config.noise_free_fraction
            else _log_uniform(rng, config.snr_range)
        ),
        phase_encode_axis=int(rng.integers(2)),
        resolution=(
            (1.0, 1.0)
            if tuple(config.resolution_range) == (1.0, 1.0)
            else (float(rng.uniform(*config.resolution_range)), float(rng.uniform(*config.resolution_range)))
        ),
    )
    reference_config = replace(accelerated, acceleration=1.0, averages=2)
    level = object_mean(image)
    scan = simulate_slice(image, accelerated, rng, level)
    input_image = sense_reconstruction(scan.kspace, scan.mask, accelerated.phase_encode_axis)
    if config.reference == "noise-free":
        full_mask = acquired_region(image.shape, accelerated.resolution)
        clean = (fft2c(scan.coil_maps * scan.image) * full_mask).astype(np.complex64)
        return input_image, sense_reconstruction(clean, full_mask, accelerated.phase_encode_axis)
    full = simulate_slice(image, reference_config, rng, level)
    return input_image, sense_reconstruction(full.kspace, full.mask, accelerated.phase_encode_axis)


def make_pairs(
    sources: Sequence[HeadSource],
    count: int,
    seed: int,
    config: PairConfig = PairConfig(),
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> list[SlicePair]:
    """``count`` random pairs (module docstring) drawn from ``sources``; the same seed gives the same pairs."""
    if not sources:
        raise InputError("no head sources to synthesise training pairs from")
    unknown = sorted(set(config.orientations) - set(ORIENTATIONS))
    if unknown or not config.orientations:
        raise InputError(f"orientations must be some of {', '.join(ORIENTATIONS)}, not {', '.join(unknown) or 'none'}")
    known = (*PROTOCOLS, RANDOM_CONTRAST)
    unknown = sorted(set(config.contrasts) - set(known))
    if unknown or not config.contrasts:
        raise InputError(f"contrasts must be some of {', '.join(known)}, not {', '.join(unknown) or 'none'}")
    axes = [ORIENTATIONS.index(name) for name in config.orientations]
    rng = np.random.default_rng(seed)
    masks = [source.head_mask() for source in sources]
    pairs = []
    for number in range(count):
        raise_if_cancelled(cancel)
        which = int(rng.integers(len(sources)))
        source, head = sources[which], masks[which]
        axis = int(rng.choice(axes))  # with all three, the same draw as rng.integers(3): earlier seeds keep their pairs
        area = head.sum(axis=tuple(a for a in range(3) if a != axis))
        candidates = np.flatnonzero(area > 0.3 * area.max())  # slices well inside the head
        fractions = source.slice_fractions(axis, int(rng.choice(candidates)))
        pixel_mm = _log_uniform(rng, config.pixel_range)
        matrix_rows, matrix_columns = (
            max(MIN_MATRIX, 2 * int(round(rng.choice(FIELDS_OF_VIEW_MM) / pixel_mm / 2))) for _ in range(2)
        )
        shape = (matrix_rows, matrix_columns)
        maps = TissueMaps(_warp(fractions, rng, shape, pixel_mm), None)
        contrast = str(rng.choice(list(config.contrasts)))
        if contrast == RANDOM_CONTRAST:
            image = random_contrast(maps, rng, bias_strength=0.3, texture=float(rng.uniform(*config.texture_range)))
        else:
            image = synthesize(
                maps,
                _jittered(PROTOCOLS[contrast], rng),
                rng,
                property_jitter=0.1,
                bias_strength=0.3,
                texture=float(rng.uniform(*config.texture_range)),
            )
        image = image.astype(np.float64)
        acceleration = float(rng.choice(config.accelerations))
        input_image, reference = scan_pair(image, acceleration, rng, config)
        pairs.append(SlicePair(input_image, reference, contrast, acceleration, source.name, ORIENTATIONS[axis]))
        report(progress, (number + 1) / count, f"training pair {number + 1}/{count}")
    return pairs


def make_image_pairs(
    images: Sequence[RealImage],
    count: int,
    seed: int,
    config: PairConfig = PairConfig(),
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> list[SlicePair]:
    """``count`` pairs whose objects are slices of real ``images`` (``real_anatomy.draw_slice``: zoom,
    rotation, flips, gamma), scanned as :func:`scan_pair`; contrast ``REAL_CONTRAST``, subject = image name.
    The same seed gives the same pairs."""
    images = [image for image in images if image.available()]
    if not images:
        raise InputError("no real images to make training pairs from (../shared/data/realmr is absent)")
    rng = np.random.default_rng(seed)
    volumes = [image.array() for image in images]
    pairs = []
    for number in range(count):
        raise_if_cancelled(cancel)
        which = int(rng.integers(len(images)))
        image, _ = draw_slice(volumes[which], images[which].volumetric, rng)
        acceleration = float(rng.choice(config.accelerations))
        input_image, reference = scan_pair(image, acceleration, rng, config)
        pairs.append(SlicePair(input_image, reference, REAL_CONTRAST, acceleration, images[which].name))
        report(progress, (number + 1) / count, f"training pair {number + 1}/{count}")
    return pairs


def save_pairs(pairs: Sequence[SlicePair], path: str | os.PathLike) -> Path:
    """Store pairs in one ``.npz`` (images of different sizes kept as separate arrays)."""
    arrays = {}
    for index, pair in enumerate(pairs):
        arrays[f"input_{index}"], arrays[f"reference_{index}"] = pair.input, pair.reference
    arrays["contrast"] = np.array([pair.contrast for pair in pairs])
    arrays["acceleration"] = np.array([pair.acceleration for pair in pairs])
    arrays["subject"] = np.array([pair.subject for pair in pairs])
    arrays["orientation"] = np.array([pair.orientation for pair in pairs])
    path = Path(path)
    np.savez(path, allow_pickle=True, **arrays)  # numpy's default, named so that mypy types **arrays as arrays
    return path


def load_pairs(path: str | os.PathLike) -> list[SlicePair]:
    """Pairs written by :func:`save_pairs` (orientation "unknown" in files written before it was recorded)."""
    with np.load(path) as data:
        count = len(data["contrast"])
        orientations = data["orientation"] if "orientation" in data.files else ["unknown"] * count
        return [
            SlicePair(
                data[f"input_{index}"],
                data[f"reference_{index}"],
                str(contrast),
                float(acceleration),
                str(subject),
                str(orientation),
            )
            for index, (contrast, acceleration, subject, orientation) in enumerate(
                zip(data["contrast"], data["acceleration"], data["subject"], orientations)
            )
        ]
