"""The module's self-test scenario (``FastMRReconTest`` runs it in Slicer, on the module's sample volume): what
only the running application has is exercised here, the parameter node made by ``settings_parameters`` and
Slicer's ``parameterNodeWrapper``, the module's logic on Slicer's scene and the reader layout in Slicer's own
views. Testing/ covers each part in detail on real MRML scenes outside Slicer.
"""

from __future__ import annotations

import os
import tempfile
import unittest
from typing import Any

from FastMRICommon.errors import InputError
from FastMRICommon.mrml_nodes import geometry_of, volume_to_array
from FastMRReconLib.study.reader_session import STUDY_METHODS, ReaderSession
from FastMRReconLib.study.reader_views import ReaderLayout
from FastMRReconLib.study.roi_table import suggested_roi_points
from FastMRReconLib.volume_logic import CHANGE_MAP_REFERENCE


def run_module_scenario(test: unittest.TestCase, logic: Any, full: Any, app: Any) -> None:
    """Simulate, reconstruct (with a change map; a bad noise SD refused before the scene changes), measure ROIs
    and read a blinded study of ``full`` (a volume node in the logic's scene) with the module's ``logic``
    (``FastMRReconLogic``), asserting through ``test``. With the layout manager of ``app`` (``slicer.app``) the
    study is read in the reader layout; without one (``--no-main-window``) entering it must be refused."""
    scene, parameters, layout_manager = full.GetScene(), logic.getParameterNode(), app.layoutManager()
    parameters.inputVolume, parameters.acceleration = full, 2.0
    undersampled = logic.simulate(parameters)
    test.assertTrue(geometry_of(undersampled).matches(geometry_of(full)))
    parameters.reconInputVolume, parameters.strength, parameters.changeMap = undersampled, "high", True
    dnn = logic.reconstruct(parameters)
    test.assertEqual(dnn.GetName(), f"{undersampled.GetName()} DNN")
    test.assertTrue(volume_to_array(dnn.GetNodeReference(CHANGE_MAP_REFERENCE))[0].min() >= 0)
    parameters.setNoiseSD, parameters.noiseSD = True, 0.0
    count = scene.GetNumberOfNodes()
    test.assertRaises(InputError, logic.reconstruct, parameters)
    test.assertEqual(scene.GetNumberOfNodes(), count)
    parameters.setNoiseSD, parameters.changeMap = False, False

    volumes = [full, undersampled, dnn]
    parameters.roiPoints, parameters.roiReference = suggested_roi_points(scene, full, volumes, parameters.roiSize), full
    test.assertEqual(logic.roiTable(parameters, volumes).GetNumberOfRows(), 3)

    session = ReaderSession(scene)
    session.add_case(volumes)
    path = session.create(os.path.join(tempfile.mkdtemp(), "study.sqlite"), seed=1)
    if layout_manager is None:
        test.assertRaises(InputError, ReaderLayout(scene, None).enter)
        return
    layout = ReaderLayout(scene, layout_manager.layoutLogic().GetLayoutNode(), layout_manager)
    session.open(path)
    layout.enter()
    try:
        test.assertIsNotNone(session.show_next_case("tester"))
        test.assertEqual(sorted(session.case_nodes), ["A", "B", "C"])
        for label in session.case_nodes:
            session.score("tester", label, 4)
        test.assertTrue(session.state("tester").can_advance)
        test.assertIsNone(session.show_next_case("tester"))
        table, _chart = session.finish()
        test.assertEqual(table.GetNumberOfRows(), 2 * len(STUDY_METHODS))  # all readers, then "tester"
    finally:
        session.close()
        layout.exit()
