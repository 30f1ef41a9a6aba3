"""A small reader study for the reading-station tests and benchmark: three cases of three versions whose method
names are distinctive words (so that a test can search a browser's page and traffic for them) and whose volume
files are named after the methods (as the demo's are: the station must never send a path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.volume_files import write_volume_array
from FastMRReconLib.study.reader_study import ReaderStudy, StudyCase

METHODS = ("zorblefull", "quaxundersampled", "wimblednn")
CASES = ("case north", "case south", "case east")
SHAPE = (5, 40, 48)  # [k, j, i]


def version_array(case_index: int, method_index: int, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A distinct image per case and method: a bright square whose place depends on both, on a noisy ramp."""
    rng = np.random.default_rng(100 * case_index + method_index)
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    array = 100.0 + 2.0 * i + 10.0 * k + rng.normal(0, 3.0 * (method_index + 1), shape)
    row, column = 4 + 6 * method_index, 4 + 8 * case_index
    array[:, row : row + 8, column : column + 8] += 300.0
    return array.astype(np.float32)


def make_station_study(folder: Path, shape: tuple[int, int, int] = SHAPE, cases: tuple[str, ...] = CASES) -> Path:
    """Write the volumes (NRRD, LPS-aligned 1 x 1 x 2 mm grid) and the study file into ``folder``; return the
    study file."""
    folder.mkdir(parents=True, exist_ok=True)
    geometry = VolumeGeometry(spacing=(1.0, 1.0, 2.0), directions=((-1.0, 0, 0), (0, -1.0, 0), (0, 0, 1.0)))
    study_cases = []
    for case_index, case_id in enumerate(cases):
        volumes = {}
        for method_index, method in enumerate(METHODS):
            name = f"{case_id.replace(' ', '_')}_{method}.nrrd"
            write_volume_array(version_array(case_index, method_index, shape), geometry, folder / name)
            volumes[method] = name
        study_cases.append(StudyCase(case_id, volumes))
    path = folder / "station_study.sqlite"
    ReaderStudy.create(path, "Station test study", METHODS, study_cases, seed=7).close()
    return path
