"""A small reader study for the reading-station tests and benchmark: three cases of three versions whose method
names are distinctive words (so that a test can search a browser's page and traffic for them) and whose volume
files are named after the methods (as the demo's are: the station must never send a path); and what both need to
run a station and a browser: a free port, the station's command in a subprocess, the system's Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the moment of the call."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_station(study: Path, port: int, *extra: str) -> tuple[subprocess.Popen, dict[str, str]]:
    """``fastmrrecon reading-station STUDY --port PORT EXTRA...`` in a subprocess; returns it and the links it
    printed (``{role: link}``), once it serves. RuntimeError with its stderr when it stops before that."""
    process = subprocess.Popen(
        [sys.executable, "-m", "FastMRReconLib.cli", "reading-station", str(study), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    links = {}
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Stop with"):
            return process, links
        if ": http" in line:
            role, link = line.strip().rsplit(": ", 1)
            links[role] = link
    raise RuntimeError(f"the station did not start: {process.stderr.read() if process.stderr else 'no output'}")


def chromium_path() -> str | None:
    """The system's Chromium (``$CHROMIUM`` first), or None."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", "/usr/lib/chromium/chromium"):
        if candidate and shutil.which(candidate):
            return candidate
    return None
