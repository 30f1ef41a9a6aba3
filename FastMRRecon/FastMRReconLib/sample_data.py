"""Sample data for the FastMRRecon module: a multi-contrast head slab and its accelerated counterpart.

The reference follows the reference protocol, fully sampled with two averages (AV=2); the accelerated scan
is undersampled (R = ``SimulationSettings.acceleration`` by default) with one average (AV=1); both are
combined by CG-SENSE with calibration coil maps, as the scanner delivers them (``simulate.simulate_volume``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from FastMRICommon.errors import CancelCheck, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.geometry import crop
from FastMRICommon.model_files import sha256_file
from FastMRICommon.volume_files import write_volume_array
from FastMRReconLib.anatomy.head_synthesis import (
    PROTOCOLS,
    TissueMaps,
    brain_centre_slice,
    label_tissue_maps,
    mni152_tissue_maps,
    shared_synthseg_dir,
    synthesize,
)
from FastMRReconLib.kspace.simulate import AcquisitionConfig, SimulationSettings, simulate_volume


def head_slab_maps(slices: int = 16, source: str = "auto") -> tuple[TissueMaps, str]:
    """Tissue maps of an axial slab of ``slices`` 1 mm slices through the centre of the brain.

    ``source``: "synthseg" (first SynthSeg subject in ``../shared``), "mni152" (nilearn), or "auto"
    (SynthSeg when present). Returns the maps and a description of where they came from.
    """
    synthseg = shared_synthseg_dir()
    if source == "synthseg" or (source == "auto" and synthseg is not None):
        if synthseg is None:
            raise FileNotFoundError("no SynthSeg label maps found in ../shared/data/synthseg")
        path = sorted(synthseg.glob("*.nii.gz"))[0]
        maps, origin = label_tissue_maps(path), f"SynthSeg label map {path.name} (Apache-2.0)"
    else:
        maps, origin = mni152_tissue_maps(), "nilearn MNI152 2009a GM/WM maps"
    centre = brain_centre_slice(maps.fractions)
    k = slice(max(centre - slices // 2, 0), max(centre - slices // 2, 0) + slices)
    fractions, geometry = {}, maps.volume_geometry()
    for name, fraction in maps.fractions.items():
        fractions[name], geometry = crop(fraction, maps.volume_geometry(), k)
    return TissueMaps(fractions, geometry), origin


def write_head_sample(
    outdir: str | Path,
    acceleration: float = SimulationSettings.acceleration,
    coils: int = SimulationSettings.coils,
    snr: float = SimulationSettings.snr,
    slices: int = 16,
    source: str = "auto",
    seed: int = SimulationSettings.seed,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> list[Path]:
    """Write, for each contrast (T1w, T2w, PD, FLAIR), ``head_<C>_full.nrrd`` (R=1, AV=2) and
    ``head_<C>_R<acceleration>.nrrd`` (AV=1) plus ``head_<C>_truth.nrrd`` (noise-free), and a JSON
    description to ``outdir``; return the written paths. ``acceleration``, ``coils``, ``snr`` (object mean /
    noise SD at one average) and ``seed`` as in ``SimulationSettings``; ``slices`` 1 mm axial slices; tissue
    maps from ``source`` (:func:`head_slab_maps`)."""
    outdir = Path(outdir)
    maps, origin = head_slab_maps(slices, source)
    geometry = maps.volume_geometry()
    accelerated = AcquisitionConfig(acceleration=acceleration, coils=coils, averages=1, snr=snr, seed=seed)
    reference = replace(accelerated, acceleration=1.0, averages=2, seed=seed + 1)
    tag = f"R{acceleration:g}".replace(".", "p")
    written = []
    for index, protocol in enumerate(PROTOCOLS.values()):
        raise_if_cancelled(cancel)
        truth = synthesize(maps, protocol)
        for suffix, image in (
            ("truth", truth),
            ("full", simulate_volume(truth, reference, cancel=cancel)),
            (tag, simulate_volume(truth, accelerated, cancel=cancel)),
        ):
            written.append(write_volume_array(image, geometry, outdir / f"head_{protocol.name}_{suffix}.nrrd"))
        report(progress, (index + 1) / len(PROTOCOLS), f"head slab: {protocol.name} written")
    description = {
        "source": origin,
        "slices": slices,
        "spacing_mm": list(geometry.spacing),
        "contrasts": {p.name: {"TR_ms": p.tr_ms, "TE_ms": p.te_ms, "TI_ms": p.ti_ms} for p in PROTOCOLS.values()},
        "full": reference.as_dict(),
        tag: accelerated.as_dict(),
        "files": [path.name for path in written],
    }
    info = outdir / "head_simulation.json"
    info.write_text(json.dumps(description, indent=2) + "\n")
    return written + [info]


#: The module's sample volume, registered with Slicer's SampleData module (file shipped in
#: ``FastMRRecon/Resources/SampleData``; written by :func:`write_module_sample`).
MODULE_SAMPLE_NAME = "FastMRReconHeadT2w"
MODULE_SAMPLE_FILE = "FastMRReconHeadT2w.nrrd"
MODULE_SAMPLE_SHA256 = "fc10f84202b1b3b5188fdf65a4daa69222c2b5814493b368f78cc5eac126635c"
MODULE_SAMPLE_DIR = Path(__file__).resolve().parents[1] / "Resources" / "SampleData"


def module_sample_source(thumbnail: str | Path) -> dict:
    """The keyword arguments of ``SampleData.SampleDataLogic.registerCustomSampleDataSource`` (Slicer's
    SampleData module) that register the module's sample under *Fast MRI*, loaded from the shipped file and
    checked against ``MODULE_SAMPLE_SHA256``; ``thumbnail``: the picture shown for it."""
    return {
        "category": "Fast MRI",
        "sampleName": MODULE_SAMPLE_NAME,
        "thumbnailFileName": str(thumbnail),
        "uris": (MODULE_SAMPLE_DIR / MODULE_SAMPLE_FILE).as_uri(),
        "fileNames": MODULE_SAMPLE_FILE,
        "nodeNames": MODULE_SAMPLE_NAME,
        "checksums": f"SHA256:{MODULE_SAMPLE_SHA256}",
    }


def module_sample_path() -> Path:
    """The shipped sample file, checked against ``MODULE_SAMPLE_SHA256``."""
    from FastMRICommon.errors import InputError

    path = MODULE_SAMPLE_DIR / MODULE_SAMPLE_FILE
    if not path.is_file() or sha256_file(path) != MODULE_SAMPLE_SHA256:
        raise InputError(f"the sample file {path} is missing or modified (SHA-256 mismatch): reinstall the extension")
    return path


def write_module_sample(path: str | Path, slices: int = 8, seed: int = 0) -> Path:
    """The module's sample: a fully sampled, two-average T2w head slab (nilearn MNI152 maps, ``slices`` 1 mm
    axial slices, 8 coils, SNR 30 at one average, CG-SENSE), stored as 16-bit integers (0-4000). The recipe is
    written out (not taken from the settings' defaults): it is the shipped file's, whose SHA-256 is
    ``MODULE_SAMPLE_SHA256``."""
    import numpy as np

    maps, _ = head_slab_maps(slices, source="mni152")
    config = AcquisitionConfig(acceleration=1.0, coils=8, averages=2, snr=30.0, seed=seed)
    image = simulate_volume(synthesize(maps, PROTOCOLS["T2w"]), config)
    scaled = np.clip(np.rint(image * (4000.0 / np.percentile(image, 99.9))), 0, 32767).astype(np.int16)
    return write_volume_array(scaled, maps.volume_geometry(), path)
