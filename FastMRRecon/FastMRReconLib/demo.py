"""The reconstruction part of ``make demo``: the module's logic run on the head sample data, on a real MRML
scene, writing what a user of the module would get (``fastmrrecon demo HEAD_DIR OUTDIR``).

Input: the folder written by ``fastmrrecon sample-data`` (``head_<C>_full.nrrd``: fully sampled, two
averages; ``head_<C>_R<R>.nrrd``: accelerated, one average; ``head_<C>_truth.nrrd``: noise-free). Output:
- ``head_<C>_DNN.nrrd``: the network's reconstruction of each accelerated volume;
- ``metrics.json``: PSNR / SSIM of the accelerated and DNN volumes against the fully sampled one;
- ``roi_table.csv``: ROI SNR / CNR of full, accelerated and DNN (ROI 1 in bright tissue, ROI 2 in darker
  tissue, background in air with noise), with % change against the full volume;
- ``side_by_side.png``: the blinded 1 x 3 view of the first case as reader "reader 1" sees it;
- ``reader_study.sqlite`` and ``reader_summary.csv/.png``: a study of all contrasts scored by two *scripted*
  readers, whose scores follow a fixed rule from SSIM (they exercise the storage and the summary: they are
  not a reader-study result).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from FastMRICommon.errors import InputError, ProgressCallback, report
from FastMRICommon.volume_files import read_volume, write_volume
from FastMRReconLib.metrics import RoiSettings, psnr, ssim
from FastMRReconLib.study.reader_session import STUDY_METHODS
from FastMRReconLib.study.reader_study import ReaderStudy, StudyCase, plot_summary, write_summary_csv
from FastMRReconLib.study.reader_views import blinded_panel, common_window
from FastMRReconLib.study.roi_table import compare_volumes, roi_table_node, suggested_roi_points, write_table_csv
from FastMRReconLib.volume_logic import reconstruct_volume_node

METHODS = STUDY_METHODS
SCRIPTED_READERS = ("scripted reader 1", "scripted reader 2")
#: SSIM against the full volume at or above which the scripted readers give 5, 4, 3, 2 (else 1).
SCRIPTED_THRESHOLDS = (0.97, 0.90, 0.80, 0.70)


def find_cases(head_dir: Path) -> dict[str, dict[str, Path]]:
    """``{contrast: {"full", "undersampled", "truth": path}}`` of a sample-data folder."""
    cases = {}
    for full in sorted(head_dir.glob("head_*_full.nrrd")):
        contrast = full.name[len("head_") : -len("_full.nrrd")]
        accelerated = sorted(head_dir.glob(f"head_{contrast}_R*.nrrd"))
        truth = head_dir / f"head_{contrast}_truth.nrrd"
        if accelerated and truth.is_file():
            cases[contrast] = {"full": full, "undersampled": accelerated[0], "truth": truth}
    if not cases:
        raise InputError(f"no head sample data in {head_dir}: run `fastmrrecon sample-data {head_dir}` first")
    return cases


def scripted_score(similarity: float, reader_index: int, rng: np.random.Generator) -> int:
    """The scripted readers' rule: 5, 4, 3, 2 at SSIM >= ``SCRIPTED_THRESHOLDS``, else 1; the second reader
    is one point stricter or milder at random (seeded)."""
    score = 1 + sum(similarity >= threshold for threshold in reversed(SCRIPTED_THRESHOLDS))
    if reader_index:
        score += int(rng.integers(-1, 2))
    return int(min(max(score, 1), 5))


def run_demo(
    head_dir: str | os.PathLike,
    outdir: str | os.PathLike,
    model: str | None = None,
    roi_size: int = RoiSettings.roi_size,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """Write the files listed in the module docstring to ``outdir``; return their paths. ``model``: a model
    file (None: the shipped model); ``roi_size`` in pixels (``RoiSettings``)."""
    import slicer
    from slicer.util import arrayFromVolume

    from FastMRReconLib.model.reconstructor import Reconstructor

    head_dir, outdir = Path(head_dir), Path(outdir)
    cases = find_cases(head_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    study_path = outdir / "reader_study.sqlite"
    if study_path.exists():
        study_path.unlink()  # the demo's own scripted study, rewritten on every run
    scene = slicer.vtkMRMLScene()
    reconstructor = Reconstructor.load(model)
    metrics, study_cases, written, arrays = {}, [], [], {}
    for index, (contrast, files) in enumerate(cases.items()):
        nodes = {
            method: read_volume(scene, files[method], f"{contrast} {method}") for method in ("full", "undersampled")
        }
        nodes["DNN"] = reconstruct_volume_node(nodes["undersampled"], reconstructor, name=f"{contrast} DNN")
        written.append(write_volume(nodes["DNN"], outdir / f"head_{contrast}_DNN.nrrd"))
        arrays[contrast] = {method: np.array(arrayFromVolume(node), float) for method, node in nodes.items()}
        full = arrays[contrast]["full"]
        metrics[contrast] = {
            method: {"psnr_db": psnr(arrays[contrast][method], full), "ssim": ssim(arrays[contrast][method], full)}
            for method in ("undersampled", "DNN")
        }
        study_cases.append(
            StudyCase(
                f"head {contrast}",
                {
                    "full": os.path.relpath(files["full"], outdir),
                    "undersampled": os.path.relpath(files["undersampled"], outdir),
                    "DNN": f"head_{contrast}_DNN.nrrd",
                },
            )
        )
        if index == 0:
            truth = read_volume(scene, files["truth"], f"{contrast} truth")
            truth_array = np.array(arrayFromVolume(truth), float)
            markups = suggested_roi_points(scene, nodes["full"], list(nodes.values()), roi_size, truth_array)
            rows = compare_volumes([nodes[m] for m in METHODS], markups, reference=nodes["full"], size=roi_size)
            written.append(write_table_csv(roi_table_node(scene, rows), outdir / "roi_table.csv"))
        report(progress, (index + 1) / (len(cases) + 1), f"reconstructed {contrast}")
    metrics_path = outdir / "metrics.json"
    metrics_path.write_text(
        json.dumps(
            {
                "reference": "fully sampled volume (AV=2)",
                "convention": "FastMRReconLib.metrics (data range = reference max, object mask, 7x7 SSIM)",
                "contrasts": metrics,
            },
            indent=2,
        )
        + "\n"
    )
    written.append(metrics_path)

    with ReaderStudy.create(study_path, "FastMRRecon demo", METHODS, study_cases, seed=0) as study:
        rng = np.random.default_rng(0)
        for reader_index, reader in enumerate(SCRIPTED_READERS):
            while (case_id := study.next_case(reader)) is not None:
                contrast = case_id.split(" ", 1)[1]
                for label, method in study.blinded(case_id, reader).items():
                    similarity = ssim(arrays[contrast][method], arrays[contrast]["full"])
                    study.record(reader, case_id, label, scripted_score(similarity, reader_index, rng))
        first = study.case_order("reader 1")[0]
        shown = study.blinded(first, "reader 1")
        contrast = first.split(" ", 1)[1]
        middle = arrays[contrast]["full"].shape[0] // 2
        shown_images = [arrays[contrast][method][middle] for method in shown.values()]
        written.append(
            blinded_panel(shown_images, list(shown), outdir / "side_by_side.png", common_window(shown_images))
        )
        summary = study.summary()
    written += [
        study_path,
        write_summary_csv(summary, outdir / "reader_summary.csv"),
        plot_summary(summary, outdir / "reader_summary.png", "FastMRRecon demo (scripted readers)"),
    ]
    report(progress, 1.0, f"demo written to {outdir}")
    return written
