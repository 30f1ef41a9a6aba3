"""IVIMEstimator operations on the diffusion series as Slicer holds it (what the module's logic calls)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from FastMRICommon.errors import InputError
from IVIMEstimatorLib.diffusion_series import DiffusionSeries, parse_bvalues, series_from_nodes


@dataclass(frozen=True)
class SeriesSummary:
    """What the module shows about a selected series: volume count, grid, and where the b-values came from."""

    volumes: int
    shape: tuple[int, int, int]
    bvalues: tuple[float, ...] | None
    bvalues_source: str  # "data", "user" or "missing"

    def text(self) -> str:
        grid = "x".join(str(n) for n in self.shape[::-1])
        if self.bvalues is None:
            return f"{self.volumes} volumes of {grid} voxels; b-values: not stored in the data, type them"
        values = ", ".join(f"{b:g}" for b in self.bvalues)
        return f"{self.volumes} volumes of {grid} voxels; b-values ({self.bvalues_source}): {values} s/mm²"


def load_series(source: Any, bvalues_text: str = "") -> DiffusionSeries:
    """The series held by ``source`` (sequence, DWI, multi-volume node or list of volumes), with b-values
    typed by the user (``bvalues_text``, e.g. "0, 20, 50") when given, else those stored in the data."""
    typed = parse_bvalues(bvalues_text, source="typed b-values") if bvalues_text.strip() else None
    return series_from_nodes(source, typed)


def summarize_series(source: Any, bvalues_text: str = "") -> SeriesSummary:
    """Describe the selected series for the GUI (b-values from the data unless typed)."""
    series = load_series(source, bvalues_text)
    if series.bvalues is None:
        return SeriesSummary(series.volumes.shape[0], series.volumes.shape[1:], None, "missing")
    origin = "user" if bvalues_text.strip() else "data"
    return SeriesSummary(
        series.volumes.shape[0], series.volumes.shape[1:], tuple(float(b) for b in series.bvalues), origin
    )


class SummaryCache:
    """The last series summary, reused while its nodes are unmodified (their MTimes, and their items' and
    image data's) and the typed b-values are the same. The module asks for a summary on every parameter
    change, and reading a series copies all its voxels."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._summary: SeriesSummary | None = None

    def get(self, source: Any, bvalues_text: str = "") -> SeriesSummary:
        """``summarize_series(source, bvalues_text)``, from the cache when nothing changed (errors are not
        cached: they are raised again on every call)."""
        key = (_modification_key(source), bvalues_text)
        summary = self._summary
        if key != self._key or summary is None:
            summary = summarize_series(source, bvalues_text)  # an error leaves the old key: no match next time
            self._summary, self._key = summary, key
        return summary


def _modification_key(source: Any) -> tuple:
    """IDs and modification times of the nodes behind ``source`` (a node or a list of volume nodes)."""
    nodes = list(source) if isinstance(source, (list, tuple)) else [source]
    key = []
    for node in nodes:
        key.append((node.GetID(), node.GetMTime()))
        items = (
            [node.GetNthDataNode(i) for i in range(node.GetNumberOfDataNodes())]
            if node.IsA("vtkMRMLSequenceNode")
            else [node]
        )
        for item in items:
            image = item.GetImageData() if hasattr(item, "GetImageData") else None
            key.append((item.GetMTime(), None if image is None else image.GetMTime()))
    return tuple(key)


def require_bvalues(series: DiffusionSeries) -> np.ndarray:
    """The series' b-values (s/mm²), or a clear error asking the user to type them."""
    if series.bvalues is None:
        raise InputError("the series has no b-values stored; type them (one per volume, s/mm²)")
    return series.bvalues
