"""Sample data for the FastMRRecon module: a multi-contrast head slab and its accelerated counterpart.

As in the anchor study, the reference is fully sampled with two averages (AV=2) and the accelerated scan
is undersampled (R=2 by default) with one average (AV=1), both combined by root-sum-of-squares over coils.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional


from FastMRICommon.errors import CancelCheck, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.mrml_bridge import crop, write_volume_array

from .head_synthesis import (PROTOCOLS, TissueMaps, brain_centre_slice, label_tissue_maps, mni152_tissue_maps,
                             shared_synthseg_dir, synthesize)
from .simulate import AcquisitionConfig, simulate_volume


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
    fractions, geometry = {}, maps.geometry
    for name, fraction in maps.fractions.items():
        fractions[name], geometry = crop(fraction, maps.geometry, k)
    return TissueMaps(fractions, geometry), origin


def write_head_sample(outdir: str | Path, acceleration: float = 2.0, coils: int = 8, snr: float = 30.0,
                      slices: int = 16, source: str = "auto", seed: int = 0,
                      progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> list[Path]:
    """Write, for each contrast (T1w, T2w, PD, FLAIR), ``head_<C>_full.nrrd`` (R=1, AV=2) and
    ``head_<C>_R<acceleration>.nrrd`` (AV=1) plus ``head_<C>_truth.nrrd`` (noise-free), and a JSON
    description; return the written paths."""
    outdir = Path(outdir)
    maps, origin = head_slab_maps(slices, source)
    accelerated = AcquisitionConfig(acceleration=acceleration, coils=coils, averages=1, snr=snr, seed=seed)
    reference = replace(accelerated, acceleration=1.0, averages=2, seed=seed + 1)
    tag = f"R{acceleration:g}".replace(".", "p")
    written = []
    for index, protocol in enumerate(PROTOCOLS.values()):
        raise_if_cancelled(cancel)
        truth = synthesize(maps, protocol)
        for suffix, image in (("truth", truth), ("full", simulate_volume(truth, reference, cancel=cancel)),
                              (tag, simulate_volume(truth, accelerated, cancel=cancel))):
            written.append(write_volume_array(image, maps.geometry, outdir / f"head_{protocol.name}_{suffix}.nrrd"))
        report(progress, (index + 1) / len(PROTOCOLS), f"head slab: {protocol.name} written")
    description = {
        "source": origin, "slices": slices, "spacing_mm": list(maps.geometry.spacing),
        "contrasts": {p.name: {"TR_ms": p.tr_ms, "TE_ms": p.te_ms, "TI_ms": p.ti_ms} for p in PROTOCOLS.values()},
        "full": reference.as_dict(), tag: accelerated.as_dict(),
        "files": [path.name for path in written],
    }
    info = outdir / "head_simulation.json"
    info.write_text(json.dumps(description, indent=2) + "\n")
    return written + [info]
