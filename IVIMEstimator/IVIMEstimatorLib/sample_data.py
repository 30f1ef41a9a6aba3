"""Sample data for the IVIMEstimator module: the placenta phantom series and its ground-truth maps."""

from __future__ import annotations

import json
from pathlib import Path

import slicer

from FastMRICommon.volume_files import write_volume_array
from IVIMEstimatorLib.diffusion_series import new_sequence_node, write_series
from IVIMEstimatorLib.phantoms.phantom import LABELS, placenta_phantom
from IVIMEstimatorLib.series_logic import require_bvalues
from IVIMEstimatorLib.signal_model import ACQUIRED_BVALUES


def write_placenta_sample(
    outdir: str | Path, snr: float = 30.0, seed: int = 0, shape: tuple[int, int, int] = (15, 128, 128)
) -> list[Path]:
    """Write ``placenta_dwi.seq.nrrd`` (b-values as the sequence index), the same series as
    ``placenta_dwi.nii.gz`` + ``placenta_dwi.bval``, the truth maps ``placenta_truth_{f,D,Dstar,S0}.nrrd``
    (D, D* in mm²/s), ``placenta_labels.nrrd`` and ``placenta_sample.json``, on a ``shape`` (slices, rows,
    columns) grid; return the paths."""
    outdir = Path(outdir)
    phantom = placenta_phantom(shape=shape, bvalues=ACQUIRED_BVALUES, snr=snr, seed=seed)
    sequence = new_sequence_node(slicer.vtkMRMLScene(), phantom.series, "placenta_dwi")
    written = [
        write_series(sequence, outdir / "placenta_dwi.seq.nrrd"),
        write_series(sequence, outdir / "placenta_dwi.nii.gz"),
        outdir / "placenta_dwi.bval",
    ]
    geometry = phantom.series.geometry
    for name in ("f", "D", "Dstar", "S0"):
        written.append(write_volume_array(getattr(phantom, name), geometry, outdir / f"placenta_truth_{name}.nrrd"))
    written.append(write_volume_array(phantom.labels, geometry, outdir / "placenta_labels.nrrd"))
    info = outdir / "placenta_sample.json"
    info.write_text(
        json.dumps(
            {
                "bvalues_s_per_mm2": require_bvalues(phantom.series).tolist(),
                "snr_at_b0_in_placenta": snr,
                "noise": "Rician",
                "noise_sigma": phantom.sigma,
                "labels": LABELS,
                "units": {"D": "mm2/s", "Dstar": "mm2/s", "f": "fraction"},
                "seed": seed,
                "files": [path.name for path in written],
            },
            indent=2,
        )
        + "\n"
    )
    return written + [info]
