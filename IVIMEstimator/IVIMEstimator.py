"""IVIMEstimator: IVIM maps (f, D, D*) from multi-b diffusion series (thin Slicer module; the engine is
IVIMEstimatorLib)."""

from typing import Optional

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper

from slicer import vtkMRMLNode

from IVIMEstimatorLib.series_logic import SeriesSummary, summarize_series


class IVIMEstimator(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("IVIM Estimator")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Fast MRI")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerFastMRI developers"]
        self.parent.helpText = _("""
Estimates intravoxel incoherent motion (IVIM) maps: perfusion fraction f, diffusion D and pseudo-diffusion
D* (mm²/s) from a diffusion series (sequence, diffusion-weighted or multi-volume node). b-values are read from
the data when stored there, otherwise typed here (s/mm², one per volume).
See the <a href="https://github.com/SlicerFastMRI/SlicerFastMRI#ivimestimator">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Reference IVIM signals for testing: OSIPI TF2.4 IVIM code collection (Apache-2.0).
""")


@parameterNodeWrapper
class IVIMEstimatorParameterNode:
    """The module's state, saved with the scene.

    inputSeries - a vtkMRMLSequenceNode, vtkMRMLDiffusionWeightedVolumeNode or multi-volume node.
    bvalues - b-values typed by the user (s/mm², comma separated); empty = use those stored in the data.
    """

    inputSeries: vtkMRMLNode
    bvalues: str = ""


class IVIMEstimatorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/IVIMEstimator.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = IVIMEstimatorLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateSummary)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputSeries:
            firstSeries = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSequenceNode")
            if firstSeries:
                self._parameterNode.inputSeries = firstSeries

    def setParameterNode(self, inputParameterNode: Optional[IVIMEstimatorParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateSummary)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateSummary)
            self._updateSummary()

    def _updateSummary(self, caller=None, event=None) -> None:
        """Show what the selected series holds, or why it cannot be used."""
        if not self._parameterNode or not self._parameterNode.inputSeries:
            self.ui.seriesSummaryLabel.text = _("Select a diffusion series")
            return
        try:
            summary = self.logic.summarize(self._parameterNode)
            self.ui.seriesSummaryLabel.text = summary.text()
        except ValueError as error:
            self.ui.seriesSummaryLabel.text = str(error)


class IVIMEstimatorLogic(ScriptedLoadableModuleLogic):
    """Can be used without the GUI; all computation is in IVIMEstimatorLib."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return IVIMEstimatorParameterNode(super().getParameterNode())

    def summarize(self, parameters: IVIMEstimatorParameterNode) -> SeriesSummary:
        return summarize_series(parameters.inputSeries, parameters.bvalues)


class IVIMEstimatorTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_series_bvalues_from_data()

    def test_series_bvalues_from_data(self):
        """The placenta phantom as a sequence node: 10 volumes, b-values read from the sequence index."""
        from FastMRICommon.mrml_bridge import new_sequence_node
        from IVIMEstimatorLib.phantom import placenta_phantom

        phantom = placenta_phantom(shape=(3, 32, 32))
        sequence = new_sequence_node(slicer.mrmlScene, phantom.series, "placenta")
        logic = IVIMEstimatorLogic()
        parameters = logic.getParameterNode()
        parameters.inputSeries = sequence
        summary = logic.summarize(parameters)
        self.assertEqual(summary.volumes, 10)
        self.assertEqual(summary.bvalues_source, "data")
        self.assertEqual(summary.bvalues[-1], 500.0)
        self.delayDisplay("Test passed")
