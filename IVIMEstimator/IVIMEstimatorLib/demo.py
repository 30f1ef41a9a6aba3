"""The IVIM part of ``make demo``: the module's logic on the placenta sample series, on a real MRML scene
(``ivimestimator demo SAMPLE_DIR OUTDIR``).

Input: the folder written by ``ivimestimator sample-data`` (``placenta_dwi.seq.nrrd``, truth maps, labels).
Output in OUTDIR:
- ``maps/``: the SCDNN maps after motion correction (f, D, D*, S0, residual; NRRD, D and D* in 10⁻³ mm²/s),
  exported as the module's *Export* button does;
- ``maps.png``: f, D, D* of the middle slice next to the truth;
- ``voxel_fit.png``: a placenta voxel's signal against b with its fitted bi-exponential;
- ``metrics.json``: NRMSE of f, D, D* against the truth inside the placenta for every method (all b-values,
  no motion correction, so that the methods are compared on the same data), and for the motion-corrected
  SCDNN run, with its time and the fraction of placenta voxels fitted. Every fit uses the automatic mask
  (the object; air is not fitted).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from FastMRICommon.errors import InputError, ProgressCallback, report
from FastMRICommon.volume_files import read_volume_array
from IVIMEstimatorLib.diffusion_series import read_series
from IVIMEstimatorLib.fits.methods import METHODS
from IVIMEstimatorLib.map_logic import EstimateConfig, IvimModels, estimate_maps, export_maps, map_nodes, voxel_fit
from IVIMEstimatorLib.phantoms.phantom import LABELS
from IVIMEstimatorLib.training.synthetic import nrmse

PARAMETERS = (("f", 1.0), ("D", 1e3), ("Dstar", 1e3))  # truth files are in fit units; maps in display units


def _truth(sample_dir: Path) -> dict[str, np.ndarray]:
    return {name: read_volume_array(sample_dir / f"placenta_truth_{name}.nrrd")[0] for name in ("f", "D", "Dstar")}


def _scores(maps: dict[str, np.ndarray], truth: dict[str, np.ndarray], region: np.ndarray) -> dict[str, float]:
    """NRMSE per parameter over the region's fitted voxels, and the fraction of the region that was fitted."""
    fitted = region & np.isfinite(maps["f"])
    return {name: nrmse(maps[name][fitted] / factor, truth[name][fitted]) for name, factor in PARAMETERS} | {
        "fitted_fraction": float(fitted.sum() / region.sum())
    }


def run_demo(
    sample_dir: str | os.PathLike, outdir: str | os.PathLike, progress: ProgressCallback | None = None
) -> list[Path]:
    """Write the files listed in the module docstring; return their paths."""
    import slicer

    sample_dir, outdir = Path(sample_dir), Path(outdir)
    series_file = sample_dir / "placenta_dwi.seq.nrrd"
    if not series_file.is_file():
        raise InputError(f"no placenta sample in {sample_dir}: run `ivimestimator sample-data {sample_dir}` first")
    scene = slicer.vtkMRMLScene()
    sequence = read_series(scene, series_file)
    truth = _truth(sample_dir)
    placenta = read_volume_array(sample_dir / "placenta_labels.nrrd")[0] == LABELS["placenta"]
    outdir.mkdir(parents=True, exist_ok=True)
    metrics: dict = {"region": "placenta (label 1)", "units": "NRMSE = RMSE / mean(truth)", "methods": {}}
    models = IvimModels()  # the SCDNN estimator is built once, for both of its runs
    for index, method in enumerate(METHODS):
        report(progress, index / (len(METHODS) + 2), f"fitting {method}")
        start = time.perf_counter()
        result = estimate_maps(sequence, EstimateConfig(method=method), models=models)  # placenta prior, auto mask
        metrics["methods"][method] = _scores(result.maps, truth, placenta) | {"seconds": time.perf_counter() - start}
    report(progress, len(METHODS) / (len(METHODS) + 2), "motion correction + SCDNN")
    start = time.perf_counter()
    corrected = estimate_maps(sequence, EstimateConfig(method="scdnn", motion_correction=True), models=models)
    metrics["scdnn_motion_corrected"] = _scores(corrected.maps, truth, placenta) | {
        "seconds": time.perf_counter() - start
    }
    maps_dir = outdir / "maps"
    if maps_dir.exists():
        for old in maps_dir.iterdir():  # the demo's own previous export
            old.unlink()
    written = export_maps(map_nodes(scene, corrected, "placenta SCDNN"), maps_dir, "nrrd")
    metrics_path = outdir / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    written += [
        metrics_path,
        _maps_figure(corrected.maps, truth, outdir / "maps.png"),
        _voxel_figure(corrected, placenta, outdir / "voxel_fit.png"),
    ]
    report(progress, 1.0, f"demo written to {outdir}")
    return written


def _maps_figure(maps: dict[str, np.ndarray], truth: dict[str, np.ndarray], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = maps["f"].shape[0] // 2
    figure, axes = plt.subplots(2, 3, figsize=(10, 6.4))
    for column, ((name, factor), (label, low, high)) in enumerate(
        zip(PARAMETERS, (("f", 0, 0.6), ("D (10^-3 mm²/s)", 0, 3), ("D* (10^-3 mm²/s)", 0, 100)))
    ):
        for row, (title, image) in enumerate((("SCDNN", maps[name][k]), ("truth", truth[name][k] * factor))):
            shown = axes[row, column].imshow(np.nan_to_num(image), cmap="viridis", vmin=low, vmax=high)
            axes[row, column].set_title(f"{label}: {title}", fontsize=9)
            axes[row, column].set_axis_off()
            figure.colorbar(shown, ax=axes[row, column], fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _voxel_figure(result, placenta: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inside = np.argwhere(placenta & np.isfinite(result.maps["f"]))
    k, j, i = inside[len(inside) // 2]
    voxel = voxel_fit(result, (i, j, k))
    figure, axes = plt.subplots(figsize=(5, 3.6))
    axes.plot(voxel.bvalues, voxel.signal, "o", label="measured")
    axes.plot(voxel.curve_b, voxel.curve, "-", label="fitted bi-exponential")
    values = voxel.values
    axes.set_title(
        f"placenta voxel (i={i}, j={j}, k={k}): f {values['f']:.3f}, D {values['D']:.2f}, "
        f"D* {values['Dstar']:.0f} (10^-3 mm²/s)",
        fontsize=8,
    )
    axes.set_xlabel("b (s/mm²)")
    axes.set_ylabel("S / S0")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
