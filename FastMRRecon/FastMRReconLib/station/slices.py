"""The images a reader's browser sees: each version of a case read once (``read_volume_array``, the same
reader as the Slicer module), turned to the axial radiological view of Slicer's Red slice view (patient right on
the screen's left, anterior up, slices from inferior to superior), and sent as 8-bit PNG slices windowed on the
server (lossless: a reader judges the reconstruction, not a codec).

A case's versions share one grey window (``reader_views.common_window``, as in the module) and must share their
grid, so that one slice index shows the same anatomy in every version (linked scrolling).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from FastMRICommon.errors import InputError
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.volume_files import read_volume_array
from FastMRReconLib.study.reader_views import common_window

#: Memory the cache of decoded volumes may hold (bytes): a few cases of clinical size.
CACHE_BYTES = 2 * 1024**3
#: Largest difference of slice position or pixel size (mm) between the versions of a case.
GRID_TOLERANCE_MM = 0.01
#: zlib level of the PNG slices: 1 encodes a 256 x 256 slice in ~2 ms; higher levels save little on MR images.
PNG_COMPRESSION = 1


@dataclass(frozen=True)
class DisplayVolume:
    """One version as displayed: ``array [slice, row, column]`` float32 in the axial view (module docstring),
    ``positions`` the S coordinate of each slice (mm) and ``pixel_mm`` (row, column) spacing (mm)."""

    array: np.ndarray
    positions: tuple[float, ...]
    pixel_mm: tuple[float, float]


def axial_view(array: np.ndarray, geometry: VolumeGeometry) -> DisplayVolume:
    """``array [k, j, i]`` turned so that axis 0 runs inferior -> superior, rows anterior -> posterior and columns
    patient right -> left (axes matched to the nearest RAS axis; an oblique volume keeps its nearest axial view)."""
    directions = np.asarray(geometry.directions, float)  # column c: RAS direction of ijk axis c
    spacing = np.asarray(geometry.spacing, float)
    array_axis_ijk = (2, 1, 0)  # numpy axis a holds ijk axis 2 - a
    dominant = [int(np.argmax(np.abs(directions[:, c]))) for c in array_axis_ijk]
    if sorted(dominant) != [0, 1, 2]:
        dominant = [2, 1, 0]  # no clear axial view: the array's own axes
    wanted = {2: (0, 1.0), 1: (1, -1.0), 0: (2, -1.0)}  # RAS axis -> (display axis, direction along it)
    order = [0, 0, 0]
    flips = []
    for axis, ras in enumerate(dominant):
        display_axis, sign = wanted[ras]
        order[display_axis] = axis
        if np.sign(directions[ras, array_axis_ijk[axis]]) != sign:
            flips.append(display_axis)
    view = np.transpose(array, order)
    if flips:
        view = np.flip(view, axis=tuple(flips))
    slice_c = array_axis_ijk[order[0]]
    steps = np.arange(view.shape[0])
    if 0 in flips:
        steps = steps[::-1]
    positions = geometry.origin[2] + directions[2, slice_c] * spacing[slice_c] * steps
    pixel_mm = (float(spacing[array_axis_ijk[order[1]]]), float(spacing[array_axis_ijk[order[2]]]))
    return DisplayVolume(np.ascontiguousarray(view, np.float32), tuple(float(p) for p in positions), pixel_mm)


def slice_png(image: np.ndarray, low: float, high: float) -> bytes:
    """One 2D ``image`` windowed to ``[low, high]`` as an 8-bit grey PNG (non-finite voxels black)."""
    from PIL import Image

    scaled = (np.nan_to_num(image, nan=low, posinf=high, neginf=low) - low) * (255.0 / max(high - low, 1e-12))
    pixels = np.clip(scaled, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
    return buffer.getvalue()


@dataclass(frozen=True)
class DisplayCase:
    """The versions of one case as displayed (``{method: DisplayVolume}``, one grid) and their common window."""

    volumes: dict[str, DisplayVolume]
    window: tuple[float, float]

    @property
    def slices(self) -> int:
        return next(iter(self.volumes.values())).array.shape[0]


class CaseCache:
    """Decoded cases shared by every reader, least recently used dropped beyond ``limit_bytes``; thread-safe (a
    case is read by one thread while the others wait for it)."""

    def __init__(self, limit_bytes: int = CACHE_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._cases: OrderedDict[str, DisplayCase] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, case_id: str, files: dict[str, Path]) -> DisplayCase:
        """The case ``case_id`` whose versions are the files ``{method: path}`` (InputError: unreadable, or
        versions on different grids)."""
        with self._lock:
            if case_id in self._cases:
                self._cases.move_to_end(case_id)
                return self._cases[case_id]
            loading = self._loading.setdefault(case_id, threading.Lock())
        with loading:
            with self._lock:
                if case_id in self._cases:
                    return self._cases[case_id]
            try:
                case = read_case(files)
            finally:
                with self._lock:
                    self._loading.pop(case_id, None)
            with self._lock:
                self._cases[case_id] = case
                while len(self._cases) > 1 and self._bytes() > self.limit_bytes:
                    self._cases.popitem(last=False)
            return case

    def _bytes(self) -> int:
        return sum(volume.array.nbytes for case in self._cases.values() for volume in case.volumes.values())


def read_case(files: dict[str, Path]) -> DisplayCase:
    """Read and orient every version of a case (``{method: path}``); they must share their grid."""
    volumes = {}
    for method, path in files.items():
        array, geometry = read_volume_array(path)
        if array.ndim != 3:
            raise InputError(f"{path.name} is not a scalar 3D volume")
        volumes[method] = axial_view(array, geometry)
    first = next(iter(volumes.values()))
    for volume in volumes.values():
        if (
            volume.array.shape != first.array.shape
            or not np.allclose(volume.positions, first.positions, atol=GRID_TOLERANCE_MM)
            or not np.allclose(volume.pixel_mm, first.pixel_mm, atol=GRID_TOLERANCE_MM)
        ):
            raise InputError("the versions of this case have different grids: they cannot be scrolled together")
    return DisplayCase(volumes, common_window([volume.array for volume in volumes.values()]))
