"""Multi-contrast head images synthesised from tissue maps with MR physics.

Each voxel is a mixture of tissues (partial-volume fractions). A tissue has a proton density PD and
relaxation times T1, T2 (ms, 3 T literature values, see ``TISSUES``); a protocol has TR, TE and optionally
TI (ms). The signal of a tissue is the spin-echo / inversion-recovery magnitude

    S = PD * |1 - 2 exp(-TI/T1) + exp(-TR/T1)| * exp(-TE/T2)     (the TI term only for inversion recovery)
    S = PD * (1 - exp(-TR/T1)) * exp(-TE/T2)                      (spin echo)

and a voxel's signal is the fraction-weighted sum. Random variation (per-tissue property jitter, a smooth
multiplicative bias field and fine texture) makes each synthesis a different "scan" for training.

Tissue maps come from nilearn's bundled MNI152 grey/white-matter maps (skull-stripped brain; CSF is the
remainder inside the brain) or from SynthSeg full-head label maps (FreeSurfer labels; the extra-cerebral
labels >= 500 are not documented and are assigned to bone, skin, fat, muscle, eye and soft tissue by their
position relative to the brain and the air, see ``SYNTHSEG_TISSUE``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from FastMRICommon.errors import InputError
from FastMRICommon.geometry import VolumeGeometry, orient_axial
from FastMRICommon.volume_files import read_volume_array


@dataclass(frozen=True)
class Tissue:
    """Proton density (relative to water) and relaxation times T1, T2 in ms."""

    pd: float
    t1_ms: float
    t2_ms: float


#: 3 T values (Stanisz et al. 2005 and similar reports), rounded.
TISSUES: dict[str, Tissue] = {
    "white matter": Tissue(0.69, 1084.0, 69.0),
    "grey matter": Tissue(0.80, 1820.0, 99.0),
    "deep grey matter": Tissue(0.76, 1400.0, 80.0),
    "CSF": Tissue(1.00, 4163.0, 2000.0),
    "fat": Tissue(0.90, 380.0, 70.0),
    "muscle": Tissue(0.75, 1420.0, 32.0),
    "skin": Tissue(0.70, 1000.0, 40.0),
    "bone": Tissue(0.05, 250.0, 2.0),
    "eye": Tissue(0.95, 4000.0, 1500.0),
    "soft tissue": Tissue(0.72, 1100.0, 50.0),
}


@dataclass(frozen=True)
class Protocol:
    """A 2D MR sequence: repetition, echo and (for inversion recovery) inversion time, all in ms."""

    name: str
    tr_ms: float
    te_ms: float
    ti_ms: float | None = None

    def signal(self, tissue: Tissue) -> float:
        """Magnitude signal of ``tissue`` (arbitrary units, PD scale) under this protocol."""
        t2_decay = np.exp(-self.te_ms / tissue.t2_ms)
        if self.ti_ms is None:
            return tissue.pd * (1 - np.exp(-self.tr_ms / tissue.t1_ms)) * t2_decay
        recovery = 1 - 2 * np.exp(-self.ti_ms / tissue.t1_ms) + np.exp(-self.tr_ms / tissue.t1_ms)
        return tissue.pd * abs(recovery) * t2_decay


#: Clinical-style 2D protocols; FLAIR's TI nulls CSF at TR 9000 ms.
PROTOCOLS: dict[str, Protocol] = {
    "T1w": Protocol("T1w", tr_ms=500.0, te_ms=12.0),
    "T2w": Protocol("T2w", tr_ms=4500.0, te_ms=100.0),
    "PD": Protocol("PD", tr_ms=3000.0, te_ms=12.0),
    "FLAIR": Protocol("FLAIR", tr_ms=9000.0, te_ms=120.0, ti_ms=2430.0),
}

_FREESURFER_TISSUE = {
    "white matter": (2, 7, 16, 41, 46, 85),
    "grey matter": (3, 8, 17, 18, 42, 47, 53, 54),
    "deep grey matter": (10, 11, 12, 13, 26, 28, 49, 50, 51, 52, 58, 60),
    "CSF": (4, 5, 14, 15, 24, 43, 44, 72),
    "bone": (515,),
    "skin": (509, 511),
    "fat": (516,),
    "muscle": (507,),
    "eye": (502, 506),
}
#: FreeSurfer / SynthSeg label -> tissue name; any other non-zero label is "soft tissue".
SYNTHSEG_TISSUE: dict[int, str] = {label: name for name, labels in _FREESURFER_TISSUE.items() for label in labels}


@dataclass
class TissueMaps:
    """Partial-volume fractions per tissue, ``fractions[name][k, j, i]`` (or ``[j, i]`` for one slice) in
    [0, 1], on one grid; ``geometry`` None for a 2D slice."""

    fractions: dict[str, np.ndarray]
    geometry: VolumeGeometry | None

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.fractions.values())).shape

    def volume_geometry(self) -> VolumeGeometry:
        """``geometry``, which maps of a volume have; a ValueError for the maps of a 2D slice (None)."""
        if self.geometry is None:
            raise ValueError("these tissue maps are a 2D slice: they have no volume geometry")
        return self.geometry


def brain_centre_slice(fractions: dict[str, np.ndarray]) -> int:
    """Index k of the brain's (grey + white matter) centre of mass in ``[k, j, i]`` tissue fractions."""
    brain = fractions["grey matter"] + fractions["white matter"]
    return int(round(np.average(np.arange(brain.shape[0]), weights=brain.sum(axis=(1, 2)))))


def mni152_tissue_maps() -> TissueMaps:
    """Grey matter, white matter and CSF fractions from nilearn's bundled MNI152 (2009a, 1 mm) maps."""
    folder = resources.files("nilearn.datasets") / "data"
    maps = {}
    for key in ("t1", "gm", "wm"):
        array, geometry = read_volume_array(Path(str(folder / f"mni_icbm152_{key}_tal_nlin_sym_09a_converted.nii.gz")))
        maps[key], geometry = orient_axial(array.astype(np.float32), geometry)
    brain = ndimage.binary_fill_holes(maps["t1"] > 0)
    gm, wm = maps["gm"] / 255.0, maps["wm"] / 255.0
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0).astype(np.float32)
    return TissueMaps({"grey matter": gm, "white matter": wm, "CSF": csf}, geometry)


def label_fractions(labels: np.ndarray, sigma_voxels: float | tuple[float, ...]) -> dict[str, np.ndarray]:
    """Tissue fractions of a FreeSurfer-labelled array (2D or 3D): each tissue's indicator smoothed by a
    Gaussian of ``sigma_voxels`` SD (partial volume at tissue borders)."""
    lookup = {label: SYNTHSEG_TISSUE.get(int(label), "soft tissue") for label in np.unique(labels) if label != 0}
    fractions = {}
    for name in TISSUES:
        members = [label for label, tissue in lookup.items() if tissue == name]
        if members:
            fractions[name] = ndimage.gaussian_filter(np.isin(labels, members).astype(np.float32), sigma_voxels)
    return fractions


def read_label_map(path: str | os.PathLike) -> tuple[np.ndarray, VolumeGeometry]:
    """A FreeSurfer / SynthSeg label map as integer ``[k, j, i]`` in axial LPS order."""
    labels, geometry = read_volume_array(path)
    return orient_axial(np.rint(labels).astype(np.int32), geometry)


def label_tissue_maps(path: str | os.PathLike, partial_volume_mm: float = 0.5) -> TissueMaps:
    """Tissue fractions from a FreeSurfer-labelled head (e.g. a SynthSeg training map), smoothed by a
    Gaussian of ``partial_volume_mm`` SD to mimic partial volume at tissue borders."""
    labels, geometry = read_label_map(path)
    return TissueMaps(label_fractions(labels, tuple(partial_volume_mm / s for s in geometry.spacing[::-1])), geometry)


def shared_synthseg_dir() -> Path | None:
    """``../shared/data/synthseg`` beside this repository (or ``$FASTMRI_SHARED/data/synthseg``) if present."""
    root = Path(os.environ.get("FASTMRI_SHARED", Path(__file__).resolve().parents[4] / "shared"))
    folder = root / "data" / "synthseg"
    return folder if folder.is_dir() and any(folder.glob("*.nii.gz")) else None


def random_bias_field(shape: tuple[int, ...], rng: np.random.Generator, strength: float) -> np.ndarray:
    """A smooth multiplicative field, exp of a random low-order polynomial, spanning about +-``strength``."""
    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    log_field = sum(rng.uniform(-1, 1) * axis + rng.uniform(-1, 1) * axis**2 / 2 for axis in axes)
    return np.exp(strength * log_field / len(axes)).astype(np.float32)


def synthesize(
    maps: TissueMaps,
    protocol: Protocol,
    rng: np.random.Generator | None = None,
    property_jitter: float = 0.0,
    bias_strength: float = 0.0,
    texture: float = 0.0,
) -> np.ndarray:
    """The magnitude image of ``maps`` under ``protocol``, float32 ``[k, j, i]``, brightest tissue near 1.

    With an ``rng``: each tissue's PD, T1 and T2 are scaled by 1 + U(-``property_jitter``, +``property_jitter``),
    the image is multiplied by a random bias field (``bias_strength``, e.g. 0.2 = +-20%) and by fine
    Gaussian texture of relative SD ``texture``.
    """
    if (property_jitter or bias_strength or texture) and rng is None:
        raise InputError("random variation needs an rng")
    signals = {}
    for name in maps.fractions:
        tissue = TISSUES[name]
        if property_jitter:
            scale = 1 + _require_rng(rng).uniform(-property_jitter, property_jitter, 3)
            tissue = Tissue(tissue.pd * scale[0], tissue.t1_ms * scale[1], tissue.t2_ms * scale[2])
        signals[name] = protocol.signal(tissue)
    return render_tissue_signals(maps, signals, rng, bias_strength, texture)


def random_contrast(
    maps: TissueMaps, rng: np.random.Generator, bias_strength: float = 0.0, texture: float = 0.0
) -> np.ndarray:
    """An image of ``maps`` in a random contrast: each tissue's signal drawn independently from U(0, 1)
    (domain randomisation, as SynthSeg trains: the network sees tissue boundaries and noise in contrasts no
    sequence produces, so that it restores any contrast rather than learning the four protocols'); air stays
    0. Bias field and texture as in :func:`synthesize`. Returns float32 of ``maps.shape``, the brightest
    tissue 1. (Whether it helps generalisation to unseen contrasts: ``docs/benchmarks/recon_generalisation.md``,
    "History".)"""
    signals = {name: float(rng.uniform(0.0, 1.0)) for name in maps.fractions}
    return render_tissue_signals(maps, signals, rng, bias_strength, texture)


def _require_rng(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        raise InputError("random variation needs an rng")
    return rng


def render_tissue_signals(
    maps: TissueMaps,
    signals: dict[str, float],
    rng: np.random.Generator | None = None,
    bias_strength: float = 0.0,
    texture: float = 0.0,
) -> np.ndarray:
    """The fraction-weighted sum of per-tissue ``signals``, times a random bias field and texture (see
    :func:`synthesize`), scaled so that the brightest tissue is 1; float32."""
    if (bias_strength or texture) and rng is None:
        raise InputError("random variation needs an rng")
    image = np.zeros(maps.shape, dtype=np.float32)
    for name, fraction in maps.fractions.items():
        image += np.float32(signals[name]) * fraction
    peak = max(signals.values(), default=0.0)
    if bias_strength:
        image *= random_bias_field(image.shape, _require_rng(rng), bias_strength)
    if texture:
        noise = _require_rng(rng).standard_normal(image.shape).astype(np.float32)
        image *= 1 + texture * ndimage.gaussian_filter(noise, 1.0) * 2.5
    return np.clip(image / max(peak, 1e-6), 0, None).astype(np.float32)
