"""BART (the Berkeley Advanced Reconstruction Toolbox) as the classic compressed-sensing peer.

``bart ecalib`` estimates ESPIRiT coil maps from the calibration block; ``bart pics -l1 -r LAMBDA`` solves
the CS-SENSE problem with an l1-wavelet prior. Data go through BART's .cfl/.hdr files (complex64,
column-major; dimensions [readout, phase, slice, coils]).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from FastMRReconLib.kspace.sense import calibration_lines


def bart_available() -> bool:
    return shutil.which("bart") is not None


def write_cfl(stem: Path, array: np.ndarray) -> None:
    """``array`` with BART's dimension order already applied (first axis fastest)."""
    stem.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(str(n) for n in array.shape) + "\n")
    np.asarray(array, np.complex64).ravel(order="F").tofile(stem.with_suffix(".cfl"))


def read_cfl(stem: Path) -> np.ndarray:
    dims = [int(n) for n in stem.with_suffix(".hdr").read_text().splitlines()[1].split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return np.fromfile(stem.with_suffix(".cfl"), np.complex64).reshape(dims, order="F")


def bart_espirit_pics(
    kspace: np.ndarray, calibration: tuple[int, int], regularization: float, iterations: int = 50, map_sets: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(images ``[map_sets, rows, columns]``, maps ``[map_sets, coils, rows, columns]``), complex, of one slice's
    ``kspace [coils, rows, columns]``: ``ecalib`` (``map_sets`` sets of ESPIRiT maps from the ``calibration``
    (rows, columns) region) + ``pics`` l1-wavelet."""
    coils, rows, columns = kspace.shape
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_cfl(folder / "k", np.transpose(kspace, (1, 2, 0))[:, :, None, :])
        region = f"{calibration[0]}:{calibration[1]}:1"
        ecalib = ["bart", "ecalib", f"-m{map_sets}", "-r", region, str(folder / "k"), str(folder / "s")]
        subprocess.run(ecalib, check=True, capture_output=True)
        pics = ["bart", "pics", "-S", "-l1", "-r", f"{regularization:g}", "-i", str(iterations)]
        subprocess.run(
            [*pics, str(folder / "k"), str(folder / "s"), str(folder / "x")], check=True, capture_output=True
        )
        maps = read_cfl(folder / "s").reshape(rows, columns, coils, map_sets, order="F")
        images = read_cfl(folder / "x").reshape(rows, columns, map_sets, order="F")
    return np.moveaxis(images, -1, 0), np.moveaxis(maps, (2, 3), (1, 0))


def bart_cs_sense(
    kspace: np.ndarray,
    mask: np.ndarray,
    regularization: float,
    phase_encode_axis: int = 0,
    iterations: int = 50,
    calibration: tuple[int, int] | None = None,
) -> np.ndarray:
    """Magnitude image of one slice's ``kspace [coils, rows, columns]`` (zeros where not acquired):
    ESPIRiT maps (one set; calibration region ``calibration`` (rows, columns), default a square of the fully
    sampled central lines) + pics l1-wavelet."""
    if calibration is None:
        lines = calibration_lines(mask, phase_encode_axis).size
        calibration = (lines, lines)
    images, _ = bart_espirit_pics(kspace, calibration, regularization, iterations)
    return np.abs(images[0]).astype(np.float32)
