"""The IVIMEstimator module's self-test scenario (run by ``IVIMEstimatorTest`` in Slicer, and by the test suite
outside it on a real MRML scene): the placenta phantom as a sequence node (b-values read from its index), SCDNN
maps with units, a voxel's fitted curve, statistics and the export of all maps."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from FastMRICommon.geometry import ijk_to_ras
from IVIMEstimatorLib.diffusion_series import new_sequence_node
from IVIMEstimatorLib.map_logic import export_maps
from IVIMEstimatorLib.phantoms.phantom import placenta_phantom
from IVIMEstimatorLib.session import estimate_config


def run_module_scenario(test: Any, logic: Any, scene: Any) -> None:
    """Run the scenario with ``logic`` (the module's ``IVIMEstimatorLogic``, or a stand-in with its parameter
    node) on ``scene``, asserting through ``test`` (a ``unittest.TestCase``)."""
    from slicer.util import arrayFromVolume

    phantom = placenta_phantom(shape=(3, 32, 32))
    sequence = new_sequence_node(scene, phantom.series, "placenta")
    parameters = logic.getParameterNode()
    parameters.inputSeries, parameters.method = sequence, "scdnn"
    summary = logic.summarize(sequence, parameters.bvalues)
    test.assertEqual((summary.volumes, summary.bvalues_source, summary.bvalues[-1]), (10, "data", 500.0))
    nodes = logic.estimate(sequence, estimate_config(parameters))
    test.assertEqual(nodes["D"].GetName(), "placenta scdnn D [10^-3 mm2/s]")
    D, placenta = arrayFromVolume(nodes["D"]), phantom.labels == 1
    test.assertAlmostEqual(float(np.median(D[placenta])), float(np.median(phantom.D[placenta]) * 1e3), delta=0.5)
    k, j, i = np.argwhere(placenta)[0]
    chart, voxel = logic.inspect(ijk_to_ras(logic.result.geometry, (i, j, k)))
    test.assertEqual((chart.GetNumberOfPlotSeriesNodes(), voxel.ijk), (2, (i, j, k)))
    test.assertEqual(logic.statistics().GetNumberOfRows(), len(nodes))
    test.assertEqual(len(export_maps(logic.map_nodes, tempfile.mkdtemp(), "nifti")), len(nodes))
