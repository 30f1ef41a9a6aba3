"""What the IVIMEstimator module keeps between clicks, without its GUI, so that it runs (and is tested) on a
plain MRML scene: the series summary, which protocols have a shipped network, the estimators built so far
(``map_logic.IvimModels``: a network is read once, not on every *Estimate*), the last result with its map
nodes (for the voxel inspector, statistics and export) and the voxel chart; and what *Retrain* would train
(``protocol_training``).

The module's logic class derives from ``IvimSession`` (and Slicer's ``ScriptedLoadableModuleLogic``); its widget
only turns clicks and parameter-node fields into these calls.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from FastMRICommon.device import torch_installed
from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback
from FastMRICommon.geometry import ras_to_ijk
from FastMRICommon.settings import from_parameters
from IVIMEstimatorLib.fits.protocol_models import ProtocolTraining, has_shipped_model, protocol_training
from IVIMEstimatorLib.map_logic import (
    EstimateConfig,
    IvimModels,
    MapResult,
    VoxelFit,
    estimate_maps,
    fit_notes,
    map_nodes,
    map_statistics,
    mask_from_node,
    statistics_table_node,
    voxel_chart_node,
    voxel_fit,
)
from IVIMEstimatorLib.series_logic import SeriesSummary, SummaryCache


def estimate_config(parameters: Any) -> EstimateConfig:
    """The ``EstimateConfig`` of the module's parameter node (any object with its settings' fields in camelCase:
    ``method``, ``bvalueSet``, ``motionCorrection``, ``autoMask``, ``prior``, ``device``; and ``modelPath``, empty
    for the shipped network). ``InputError`` naming a setting outside its choices."""
    return from_parameters(EstimateConfig, parameters, model=parameters.modelPath or None)


def series_source(series_node: Any, checked_volumes: Sequence[Any]) -> Any:
    """What to estimate from: the series node, else the checked scalar volumes (a list, one per b-value), else
    None."""
    if series_node:
        return series_node
    return list(checked_volumes) or None


@dataclass(frozen=True)
class Readiness:
    """What the module can do with the selected series: ``summary`` (the line describing it, or why it cannot
    be read; None when nothing is selected), ``ready`` (*Estimate* can run: the series has b-values) and
    ``needs_model`` (the method is a network, no model file is chosen and no shipped one fits the b-values:
    the *Retrain* offer)."""

    summary: str | None
    ready: bool
    needs_model: bool


class IvimSession:
    """The module's state (module docstring). Attributes: ``result`` (the last ``MapResult``, or None),
    ``map_nodes`` (its volume nodes by map key), ``models`` (the ``IvimModels`` kept across estimates)."""

    def __init__(self) -> None:
        super().__init__()  # cooperative: the module's logic also derives from ScriptedLoadableModuleLogic
        self._summaries = SummaryCache()
        self.models = IvimModels()
        self.forget()

    def forget(self) -> None:
        """Drop what refers to the scene's nodes (the scene is being closed); the estimators stay."""
        self.result: MapResult | None = None
        self.map_nodes: dict[str, Any] = {}
        self._chart = None
        self._shipped: dict[tuple, bool] = {}

    def summarize(self, source: Any, bvalues_text: str = "") -> SeriesSummary:
        """What ``source`` (a series node, or a list of scalar volumes) holds, with the typed b-values
        (``bvalues_text``, s/mm²) when given; cached while its nodes are unmodified. Raises ``InputError``."""
        return self._summaries.get(source, bvalues_text)

    def readiness(self, source: Any, parameters: Any) -> Readiness:
        """The ``Readiness`` of ``source`` (series node, list of scalar volumes, or None) under the module's
        ``parameters`` (fields ``bvalues``, ``method`` and ``modelPath``; None: nothing to do yet)."""
        if source is None or parameters is None:
            return Readiness(None, False, False)
        try:
            summary = self.summarize(source, parameters.bvalues)
        except ValueError as error:  # InputError: the line says what is wrong
            return Readiness(str(error), False, False)
        bvalues = summary.bvalues
        ready = bvalues is not None
        needs_model = (
            bvalues is not None and not parameters.modelPath and self.needs_training(parameters.method, bvalues)
        )
        return Readiness(summary.text(), ready, needs_model)

    def needs_training(self, method: str, bvalues: Sequence[float]) -> bool:
        """True when ``method`` is a network and no shipped one fits these b-values (s/mm²); checked once per
        protocol. False while torch is not installed, as the check reads the model files."""
        if not torch_installed():
            return False
        key = (method, tuple(float(b) for b in bvalues))
        if key not in self._shipped:
            self._shipped[key] = has_shipped_model(method, bvalues)
        return not self._shipped[key]

    def protocol_training(self, source: Any, parameters: Any, folder: str | os.PathLike) -> ProtocolTraining:
        """What *Retrain* trains for ``source`` under the module's ``parameters`` (fields ``bvalues``, ``method``,
        ``prior``, ``trainingSnrLow``, ``trainingSnrHigh``, ``device``): the ``ProtocolTraining`` of the series'
        b-values (s/mm²), with its model file in ``folder`` (the module gives Slicer's user settings folder).
        Raises ``InputError``."""
        bvalues = self.summarize(source, parameters.bvalues).bvalues
        if bvalues is None:
            raise InputError("the series has no b-values stored; type them (one per volume, s/mm²)")
        return protocol_training(
            bvalues,
            folder,
            parameters.method,
            parameters.prior,
            parameters.trainingSnrLow,
            parameters.trainingSnrHigh,
            parameters.device,
        )

    def estimate(
        self,
        source: Any,
        config: EstimateConfig,
        bvalues_text: str = "",
        mask_node: Any = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> dict[str, Any]:
        """New map volumes ``"<first node's name> <method> <map> [<unit>]"`` of ``source`` (a series node, or a
        list of scalar volumes with ``bvalues_text``), see ``map_logic.estimate_maps``; they become the session's
        result. Raises ``InputError``, ``ModelFileError``, or ``Cancelled`` (nothing is added then)."""
        result = estimate_maps(
            source, config, bvalues_text, mask_node, progress=progress, cancel=cancel, models=self.models
        )
        first = source[0] if isinstance(source, (list, tuple)) else source
        self.result = result
        self.map_nodes = map_nodes(first.GetScene(), result, f"{first.GetName()} {config.method}")
        return self.map_nodes

    def fit_notes(self) -> list[str]:
        """The last estimate's noise SD and warnings, for the status line (``map_logic.fit_notes``)."""
        return [] if self.result is None else fit_notes(self.result.fit)

    def _require_result(self) -> MapResult:
        if self.result is None or not self.map_nodes:
            raise InputError("there are no maps yet: estimate them first")
        return self.result

    def statistics(self, region_node: Any = None) -> Any:
        """A new table node: mean and SD of every map inside ``region_node`` (label map or segmentation; None:
        every fitted voxel)."""
        result = self._require_result()
        region = None
        if region_node is not None:
            region = mask_from_node(region_node, self.map_nodes["f"], result.maps["f"].shape)
        return statistics_table_node(self.map_nodes["f"].GetScene(), map_statistics(result.maps, region))

    def inspect(self, position_ras: Sequence[float]) -> tuple[Any, VoxelFit]:
        """(chart node, ``VoxelFit``) of the voxel at the RAS position ``position_ras`` (mm, in the maps' frame);
        the chart replaces the previous one. Raises ``InputError`` outside the series or where there is no fit."""
        result = self._require_result()
        voxel = voxel_fit(result, np.rint(ras_to_ijk(result.geometry, position_ras)).astype(int))
        scene = self.map_nodes["f"].GetScene()
        if self._chart is not None and scene.IsNodePresent(self._chart):
            scene.RemoveNode(self._chart)
        self._chart = voxel_chart_node(scene, voxel)
        return self._chart, voxel
