"""IVIMEstimator operations on the diffusion series as Slicer holds it (what the module's logic calls)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from FastMRICommon.errors import InputError
from FastMRICommon.mrml_bridge import DiffusionSeries, parse_bvalues, series_from_nodes


@dataclass(frozen=True)
class SeriesSummary:
    """What the module shows about a selected series: volume count, grid, and where the b-values came from."""

    volumes: int
    shape: tuple[int, int, int]
    bvalues: Optional[tuple[float, ...]]
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
    return SeriesSummary(series.volumes.shape[0], series.volumes.shape[1:],
                         tuple(float(b) for b in series.bvalues), origin)


def require_bvalues(series: DiffusionSeries) -> np.ndarray:
    """The series' b-values (s/mm²), or a clear error asking the user to type them."""
    if series.bvalues is None:
        raise InputError("the series has no b-values stored; type them (one per volume, s/mm²)")
    return series.bvalues
