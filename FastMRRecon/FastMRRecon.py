"""FastMRRecon: deep-learning reconstruction of accelerated MR images, ROI SNR/CNR and blinded reader studies
(thin Slicer module: it wires the GUI to FastMRReconLib, where everything real is)."""

from __future__ import annotations

import os

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from FastMRICommon.button_jobs import ButtonJobs
from FastMRICommon.device import ensure_torch_with_pytorch_utils
from FastMRICommon.gui_binding import ParameterGui, placing_point_list
from FastMRICommon.reload import forget_packages
from FastMRICommon.settings import settings_parameters
from FastMRReconLib.kspace.simulate import SimulationSettings
from FastMRReconLib.metrics import RoiSettings
from FastMRReconLib.model.settings import ReconstructionSettings
from FastMRReconLib.module_logic import ReconModuleLogic
from FastMRReconLib.sample_data import MODULE_SAMPLE_NAME, module_sample_source
from FastMRReconLib.study.reader_panel import ReaderStudyPanel
from FastMRReconLib.study.roi_table import ROI_NAMES, write_table_csv
from FastMRReconLib.volume_logic import CHANGE_MAP_OPACITY, CHANGE_MAP_REFERENCE


class FastMRRecon(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Fast MR Recon")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Fast MRI")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerFastMRI developers"]
        self.parent.helpText = _("""
Reconstructs accelerated (undersampled) MR images with a deep network (residual U-Net + fidelity network),
measures 4x4-pixel ROI SNR/CNR and runs blinded side-by-side reader studies (Likert 1-5).
<b>Simulate</b> makes an accelerated counterpart of a fully sampled volume. ROI points: 1st ROI 1, 2nd ROI 2,
3rd background; SENSE images are zero in air far from the head, so place the background ROI in air near it.
See the <a href="https://github.com/SlicerFastMRI/SlicerFastMRI#fastmrrecon">documentation</a>.
""")
        self.parent.acknowledgementText = _("Sample data are synthesised from nilearn's MNI152 maps (a T2w head slab).")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Register the module's sample volume (shipped with the extension, SHA-256 checked) with SampleData."""
    import SampleData

    thumbnail = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "FastMRRecon.png")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(**module_sample_source(thumbnail))


def torchReady() -> bool:
    """True when torch is importable, after asking the user before installing it (PyTorch extension)."""
    return ensure_torch_with_pytorch_utils(slicer.util.confirmOkCancelDisplay)


@parameterNodeWrapper
@settings_parameters(
    (ReconstructionSettings, SimulationSettings, RoiSettings), WithinRange, Choice, skip=("precision",)
)
class FastMRReconParameterNode:
    """The module's state, saved with the scene: the settings classes' fields in camelCase (device, strength,
    setNoiseSD, noiseSD, changeMap; acceleration ... seed; roiSize, with their defaults, ranges and choices),
    and the nodes and the reader's name below (reconOutputVolume None: a new volume; roiPoints: ROI 1, ROI 2,
    background; roiReference: the volume the % changes refer to; roiTable: the last ROI table)."""

    reconInputVolume: vtkMRMLScalarVolumeNode
    reconOutputVolume: vtkMRMLScalarVolumeNode
    inputVolume: vtkMRMLScalarVolumeNode
    roiPoints: vtkMRMLMarkupsFiducialNode
    roiReference: vtkMRMLScalarVolumeNode
    roiTable: vtkMRMLTableNode
    readerName: str = ""


class FastMRReconWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic, self._parameterNode, self._parameterGui, self._reader = None, None, None, None  # in setup
        self._jobs = ButtonJobs(self._checkCanApply)  # the job in progress (its button reads Cancel)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/FastMRRecon.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic, self._parameterGui = FastMRReconLogic(), ParameterGui(self.ui)
        self._reader = ReaderStudyPanel(
            self.ui,
            slicer.mrmlScene,  # the reader-study section
            lambda: self._parameterNode.readerName if self._parameterNode else "",
        )
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(
            slicer.app.applicationLogic().GetSelectionNode(),
            slicer.vtkMRMLSelectionNode.ActivePlaceNodeIDChangedEvent,
            self.onActivePlaceNodeChanged,
        )
        self.ui.rawKspacePathLineEdit.connect("currentPathChanged(QString)", self._checkCanApply)
        self.ui.roiPointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.roiPlaceWidget.setCurrentNode)
        self.ui.roiPointsSelector.connect("nodeAddedByUser(vtkMRMLNode*)", self.onRoiPointsAdded)
        self.ui.reconstructButton.connect("clicked(bool)", self.onReconstructButton)
        self.ui.simulateButton.connect("clicked(bool)", self.onSimulateButton)
        self.ui.roiComputeButton.connect("clicked(bool)", self.onRoiCompute)
        self.ui.roiExportButton.connect("clicked(bool)", self.onRoiExport)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self._reader:
            self._reader.close()
        if self._parameterGui:
            self._parameterGui.unbind()

    def onReload(self) -> None:
        """Slicer's Reload re-executes only this file: forget FastMRReconLib first, so that this file imports it
        afresh (FastMRICommon is shared with IVIMEstimator and stays: restart Slicer after changing it)."""
        forget_packages(["FastMRReconLib"])
        ScriptedLoadableModuleWidget.onReload(self)

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        pass  # the GUI stays bound while hidden: binding on each entry piles up observers (gui_binding)

    def onSceneStartClose(self, caller, event) -> None:
        self._reader.close()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if firstVolumeNode and not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = firstVolumeNode
        if firstVolumeNode and not self._parameterNode.reconInputVolume:
            self._parameterNode.reconInputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: FastMRReconParameterNode | None) -> None:
        if self._parameterNode:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        # the same parameter node keeps its binding (and wrapper); another one is bound afresh
        self._parameterNode = self._parameterGui.bind(inputParameterNode)
        if self._parameterNode:
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        parameters, jobs = self._parameterNode, self._jobs
        self.ui.reconstructButton.enabled = jobs.enabled(
            self.ui.reconstructButton,
            parameters and (parameters.reconInputVolume or self.ui.rawKspacePathLineEdit.currentPath),
        )
        self.ui.simulateButton.enabled = jobs.enabled(self.ui.simulateButton, parameters and parameters.inputVolume)
        self.ui.roiComputeButton.enabled = bool(parameters and parameters.roiPoints) and jobs.idle
        self.ui.roiExportButton.enabled = bool(parameters and parameters.roiTable) and jobs.idle

    # -- long jobs: progress, Cancel, a responsive GUI ------------------------------------------------------
    def _run(self, button, job):
        """Run ``job(progress, cancel)`` with ``button`` turned into Cancel; errors in a message box. Returns
        the job's result, or None when it failed or was cancelled."""
        return self._jobs.run(
            button,
            job,
            self._showProgress,
            lambda label: slicer.util.tryWithErrorDisplay(_("{task} failed.").format(task=label)),
            _("Cancel"),
            lambda: self._status(_("Cancelled: nothing was added to the scene.")),
        )

    def _showProgress(self, fraction: float, message: str) -> None:
        recon = self._jobs.running is self.ui.reconstructButton
        (self.ui.reconProgressBar if recon else self.ui.simulateProgressBar).value = int(round(100 * fraction))
        self._status(message)
        slicer.app.processEvents()

    def _status(self, message: str) -> None:
        recon = self._jobs.running is self.ui.reconstructButton
        (self.ui.reconStatusLabel if recon else self.ui.simulateStatusLabel).text = message

    def onReconstructButton(self) -> None:
        if self._jobs.request_cancel(self.ui.reconstructButton):
            return
        if not torchReady():
            self.ui.reconStatusLabel.text = _("PyTorch is needed to reconstruct; it was not installed.")
            return
        modelPath, rawPath = self.ui.modelPathLineEdit.currentPath or None, self.ui.rawKspacePathLineEdit.currentPath
        withChangeMap = self._parameterNode.changeMap and not rawPath  # as the job reads it (the box may change)
        output = self._run(
            self.ui.reconstructButton,
            lambda progress, cancel: self.logic.reconstruct(
                self._parameterNode, modelPath, progress=progress, cancel=cancel, rawKspacePath=rawPath or None
            ),
        )
        if output is not None:  # the change map over the output; without one, no earlier change map stays on top
            changeMap = output.GetNodeReference(CHANGE_MAP_REFERENCE) if withChangeMap else None
            slicer.util.setSliceViewerLayers(
                background=output,
                foreground=changeMap,
                fit=True,
                foregroundOpacity=CHANGE_MAP_OPACITY if changeMap is not None else None,
            )
            self.ui.reconStatusLabel.text = (
                _("Created {name}").format(name=output.GetName())
                if changeMap is None
                else _("Created {name} and {changeMap}, shown over it").format(
                    name=output.GetName(), changeMap=changeMap.GetName()
                )
            )

    def onSimulateButton(self) -> None:
        if self._jobs.request_cancel(self.ui.simulateButton):
            return
        output = self._run(
            self.ui.simulateButton,
            lambda progress, cancel: self.logic.simulate(self._parameterNode, progress=progress, cancel=cancel),
        )
        if output is not None:
            slicer.util.setSliceViewerLayers(background=output, fit=True)
            self.ui.simulateStatusLabel.text = _("Created {name}").format(name=output.GetName())

    # -- ROI SNR / CNR --------------------------------------------------------------------------------------
    def onRoiPointsAdded(self, node) -> None:
        node.SetMaximumNumberOfControlPoints(len(ROI_NAMES))
        self.ui.roiPlaceWidget.setCurrentNode(node)

    def onActivePlaceNodeChanged(self, caller=None, event=None) -> None:
        """Once the ROI point list is full, further clicks place into a new list Slicer makes: follow it."""
        successor = placing_point_list(slicer.mrmlScene, self._parameterNode.roiPoints) if self._parameterNode else None
        if successor is not None:
            successor.SetMaximumNumberOfControlPoints(len(ROI_NAMES))
            self._parameterNode.roiPoints = successor  # the selector, and through it the place widget, follow

    def onRoiCompute(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("ROI measurement failed.")):
            table = self.logic.roiTable(self._parameterNode, list(self.ui.roiVolumesSelector.checkedNodes()))
            self.ui.roiTableView.setMRMLTableNode(table)
            self.ui.roiStatusLabel.text = _("Measured {count} volumes").format(count=table.GetNumberOfRows())

    def onRoiExport(self) -> None:
        path = qt.QFileDialog.getSaveFileName(self.parent, _("Export ROI table"), "", "CSV (*.csv)")
        if path:
            with slicer.util.tryWithErrorDisplay(_("Export failed.")):
                write_table_csv(self._parameterNode.roiTable, path if path.lower().endswith(".csv") else path + ".csv")
                self.ui.roiStatusLabel.text = _("Wrote {path}").format(path=path)


class FastMRReconLogic(ScriptedLoadableModuleLogic, ReconModuleLogic):
    """Can be used without the GUI: the computations are ReconModuleLogic's (FastMRReconLib.module_logic); this
    class adds the parameter node."""

    def getParameterNode(self):
        return FastMRReconParameterNode(super().getParameterNode())


class FastMRReconTest(ScriptedLoadableModuleTest):
    """Runs in Slicer on the module's sample data (the scenario: FastMRReconLib.self_test)."""

    def runTest(self):
        import SampleData

        from FastMRReconLib.self_test import run_module_scenario

        slicer.mrmlScene.Clear()
        registerSampleData()
        self.assertTrue(torchReady(), "PyTorch is needed for this test")
        run_module_scenario(self, FastMRReconLogic(), SampleData.downloadSample(MODULE_SAMPLE_NAME), slicer.app)
        self.delayDisplay("Test passed")
