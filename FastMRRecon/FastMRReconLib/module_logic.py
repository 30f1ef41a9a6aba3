"""What the FastMRRecon module's logic does with its parameter node (the module file's ``FastMRReconLogic`` adds
only Slicer's parameter-node plumbing): reconstruct (a volume, or a raw k-space file), simulate, ROI tables.

``parameters`` is the module's parameter node wrapper: the fields of ``ReconstructionSettings``,
``SimulationSettings`` and ``RoiSettings`` in camelCase and the module's node references (``reconInputVolume``,
``reconOutputVolume``, ``inputVolume``, ``roiPoints``, ``roiReference``, ``roiTable``). Tested outside Slicer
with a stand-in holding the same attributes on a real MRML scene.
"""

from __future__ import annotations

import logging
from typing import Any

from FastMRICommon.errors import CancelCheck, ProgressCallback
from FastMRICommon.settings import from_parameters
from FastMRReconLib.kspace.simulate import SimulationSettings
from FastMRReconLib.kspace_logic import reconstruct_kspace_node
from FastMRReconLib.study.roi_table import compare_volumes, roi_table_node
from FastMRReconLib.volume_logic import (
    ReconstructorCache,
    noise_arguments,
    reconstruct_volume_node,
    simulate_volume_node,
)

log = logging.getLogger("fastmrrecon")


class ReconModuleLogic:
    """The module's computations; each model file's network is loaded once per device (``reconstructors``)."""

    def __init__(self) -> None:
        super().__init__()
        self.reconstructors = ReconstructorCache()

    def reconstruct(
        self,
        parameters: Any,
        modelPath: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        rawKspacePath: str | None = None,
    ) -> Any:
        """The network's reconstruction of ``parameters.reconInputVolume`` in ``reconOutputVolume`` (or a new
        volume "<input> DNN", which becomes the output), at ``parameters.strength`` with ``noiseSD`` when
        ``setNoiseSD`` (else the measured noise); with ``changeMap`` the output references a new change-map
        volume as ``CHANGE_MAP_REFERENCE``. Bad settings raise InputError before the model is loaded. With
        ``rawKspacePath``: a new volume of the parameter node's scene from that raw k-space file, by the k-space
        network (``kspace_logic``)."""
        if rawKspacePath:
            network = self.reconstructors.get(modelPath, parameters.device, kspace=True)
            scene = parameters.parameterNode.GetScene()
            return reconstruct_kspace_node(scene, rawKspacePath, network, progress, cancel)
        noiseSD, strength = noise_arguments(parameters.strength, parameters.noiseSD if parameters.setNoiseSD else None)
        network = self.reconstructors.get(modelPath, parameters.device)
        output = reconstruct_volume_node(
            parameters.reconInputVolume,
            network,
            output=parameters.reconOutputVolume,
            progress=progress,
            cancel=cancel,
            noise_sd=noiseSD,
            strength=strength,
            change_map=parameters.changeMap,
        )
        parameters.reconOutputVolume = output
        return output

    def simulate(self, parameters: Any, progress: ProgressCallback | None = None, cancel: CancelCheck | None = None):
        """A new volume: the simulated accelerated scan of ``parameters.inputVolume`` (SimulationSettings)."""
        settings = from_parameters(SimulationSettings, parameters)
        log.info("FastMRRecon: simulating %s", settings)
        return simulate_volume_node(
            parameters.inputVolume, settings.acquisition(), combine=settings.combine, progress=progress, cancel=cancel
        )

    def roiTable(self, parameters: Any, volumes: list) -> Any:
        """A new table of ROI statistics of ``volumes`` (reference: ``parameters.roiReference``, or the first)."""
        rows = compare_volumes(
            volumes, parameters.roiPoints, reference=parameters.roiReference, size=parameters.roiSize
        )
        parameters.roiTable = roi_table_node(parameters.roiPoints.GetScene(), rows)
        return parameters.roiTable
