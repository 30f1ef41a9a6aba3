"""FastMRRecon: deep-learning reconstruction of accelerated MR images, ROI SNR/CNR and blinded reader studies
(thin Slicer module; everything real is in FastMRReconLib)."""

import logging
import os
import secrets
from typing import Annotated, Optional

import qt
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
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLTableNode

from FastMRICommon.device import DEVICE_CHOICES, ensure_torch
from FastMRICommon.button_jobs import ButtonJobs
from FastMRICommon.errors import InputError
from FastMRICommon.gui_binding import ParameterGui, placing_point_list
from FastMRReconLib.kspace.masks import MASKS
from FastMRReconLib.study.reader_session import (create_study_from_nodes, load_blinded_case, summary_chart_node,
                                           summary_table_node)
from FastMRReconLib.study.reader_study import LIKERT, ReaderStudy
from FastMRReconLib.study.reader_views import (READER_LAYOUT_ID, VIEW_NAMES, SavedViews, apply_window, common_window,
                                         install_reader_layout, show_blinded)
from FastMRReconLib.study.roi_table import ROI_NAMES, compare_volumes, roi_table_node, write_table_csv
from FastMRReconLib.sample_data import MODULE_SAMPLE_DIR, MODULE_SAMPLE_FILE, MODULE_SAMPLE_NAME, MODULE_SAMPLE_SHA256
from FastMRReconLib.kspace.simulate import COMBINATIONS, AcquisitionConfig
from FastMRReconLib.volume_logic import (CHANGE_MAP_REFERENCE, STRENGTH_NAMES, noise_arguments,
                                         reconstruct_volume_node, simulate_volume_node)

#: The versions compared in a reader study, in the order of the case selectors.
STUDY_METHODS = ("full", "undersampled", "DNN")
#: Opacity of a change map shown over its reconstruction in the slice views.
CHANGE_MAP_OPACITY = 0.4


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
        self.parent.acknowledgementText = _("""
Sample data are synthesised from nilearn's MNI152 maps (a T2w head slab).
""")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Register the module's sample volume (shipped with the extension, SHA-256 checked) with SampleData."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="Fast MRI",
        sampleName=MODULE_SAMPLE_NAME,
        thumbnailFileName=os.path.join(os.path.dirname(__file__), "Resources", "Icons", "FastMRRecon.png"),
        uris=(MODULE_SAMPLE_DIR / MODULE_SAMPLE_FILE).as_uri(),
        fileNames=MODULE_SAMPLE_FILE,
        nodeNames=MODULE_SAMPLE_NAME,
        checksums=f"SHA256:{MODULE_SAMPLE_SHA256}",
    )


def _installTorch():
    import PyTorchUtils

    PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)


def torchReady() -> bool:
    """True when torch is importable, after asking the user before installing it (PyTorch extension)."""
    return ensure_torch(lambda message: slicer.util.confirmOkCancelDisplay(message), _installTorch)


@parameterNodeWrapper
class FastMRReconParameterNode:
    """The module's state, saved with the scene.

    reconInputVolume - accelerated volume to reconstruct; reconOutputVolume - where the result goes (None:
    a new volume); device - auto / cpu / cuda; strength - low / medium / high (the noise level the network
    is told, relative to the measured one); setNoiseSD, noiseSD - when set, the image's noise SD (its units,
    > 0) instead of the measured one; changeMap - also make the change-map volume and show it over the output.
    inputVolume - fully sampled volume to simulate from; acceleration, averages, coils, snr, mask,
    centerFraction, resolutionRows / resolutionColumns (AcquisitionConfig.resolution), seed, combine - see
    AcquisitionConfig and simulate_volume.
    roiPoints - point list (ROI 1, ROI 2, background); roiReference - volume the % changes refer to;
    roiSize - ROI side in pixels; roiTable - the last ROI table.
    readerName - the reader scoring the study.
    """

    reconInputVolume: vtkMRMLScalarVolumeNode
    reconOutputVolume: vtkMRMLScalarVolumeNode
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    strength: Annotated[str, Choice(list(STRENGTH_NAMES))] = "medium"
    setNoiseSD: bool = False
    noiseSD: Annotated[float, WithinRange(0.0, 1.0e6)] = 0.0
    changeMap: bool = False
    inputVolume: vtkMRMLScalarVolumeNode
    acceleration: Annotated[float, WithinRange(1.0, 8.0)] = 2.0
    averages: Annotated[int, WithinRange(1, 8)] = 1
    coils: Annotated[int, WithinRange(1, 32)] = 8
    snr: Annotated[float, WithinRange(1.0, 1000.0)] = 30.0
    mask: Annotated[str, Choice(sorted(MASKS))] = "equispaced"
    centerFraction: Annotated[float, WithinRange(0.01, 0.5)] = 0.08
    resolutionRows: Annotated[float, WithinRange(0.1, 1.0)] = 1.0
    resolutionColumns: Annotated[float, WithinRange(0.1, 1.0)] = 1.0
    combine: Annotated[str, Choice(list(COMBINATIONS))] = "sense"
    seed: Annotated[int, WithinRange(0, 1000000)] = 0
    roiPoints: vtkMRMLMarkupsFiducialNode
    roiReference: vtkMRMLScalarVolumeNode
    roiSize: Annotated[int, WithinRange(2, 32)] = 4
    roiTable: vtkMRMLTableNode
    readerName: str = ""


class FastMRReconWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterGui = None  # the GUI's binding to the parameter node (set up with the GUI)
        self._jobs = ButtonJobs(self._checkCanApply)  # the job in progress (its button reads Cancel)
        self._pendingCases = []
        self._study = None
        self._case = None
        self._caseNodes = {}
        self._savedViewArrangement = None
        self._savedViews = None
        self._savedAnnotations = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/FastMRRecon.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = FastMRReconLogic()
        self._parameterGui = ParameterGui(self.ui)
        self._scoreBoxes = {"A": self.ui.scoreAComboBox, "B": self.ui.scoreBComboBox, "C": self.ui.scoreCComboBox}
        for box in self._scoreBoxes.values():
            box.addItem(_("not scored"))
            for score in sorted(LIKERT, reverse=True):
                box.addItem(f"{score} {LIKERT[score]}")
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.app.applicationLogic().GetSelectionNode(),
                         slicer.vtkMRMLSelectionNode.ActivePlaceNodeIDChangedEvent, self.onActivePlaceNodeChanged)
        self.ui.reconstructButton.connect("clicked(bool)", self.onReconstructButton)
        self.ui.simulateButton.connect("clicked(bool)", self.onSimulateButton)
        self.ui.roiPointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.roiPlaceWidget.setCurrentNode)
        self.ui.roiPointsSelector.connect("nodeAddedByUser(vtkMRMLNode*)", self.onRoiPointsAdded)
        self.ui.roiComputeButton.connect("clicked(bool)", self.onRoiCompute)
        self.ui.roiExportButton.connect("clicked(bool)", self.onRoiExport)
        self.ui.addCaseButton.connect("clicked(bool)", self.onAddCase)
        self.ui.createStudyButton.connect("clicked(bool)", self.onCreateStudy)
        self.ui.startReadingButton.connect("clicked(bool)", self.onStartReading)
        self.ui.nextCaseButton.connect("clicked(bool)", self.onNextCase)
        self.ui.finishReadingButton.connect("clicked(bool)", self.onFinishReading)
        for label, box in self._scoreBoxes.items():
            box.connect("activated(int)", lambda index, label=label: self.onScore(label, index))
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        self._closeStudy()
        if self._parameterGui:
            self._parameterGui.unbind()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # The GUI stays bound to the parameter node while hidden: binding it again on each entry would pile up
        # observers (FastMRICommon.gui_binding).
        pass

    def onSceneStartClose(self, caller, event) -> None:
        self._closeStudy()
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

    def setParameterNode(self, inputParameterNode: Optional[FastMRReconParameterNode]) -> None:
        if self._parameterNode:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        # the same parameter node keeps its binding (and wrapper); another one is bound afresh
        self._parameterNode = self._parameterGui.bind(inputParameterNode)
        if self._parameterNode:
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        parameters, jobs = self._parameterNode, self._jobs
        self.ui.reconstructButton.enabled = jobs.enabled(self.ui.reconstructButton,
                                                         parameters and parameters.reconInputVolume)
        self.ui.simulateButton.enabled = jobs.enabled(self.ui.simulateButton, parameters and parameters.inputVolume)
        self.ui.roiComputeButton.enabled = bool(parameters and parameters.roiPoints) and jobs.idle
        self.ui.roiExportButton.enabled = bool(parameters and parameters.roiTable) and jobs.idle

    # -- long jobs: progress, Cancel, a responsive GUI ------------------------------------------------------
    def _run(self, button, job):
        """Run ``job(progress, cancel)`` with ``button`` turned into Cancel; errors in a message box. Returns
        the job's result, or None when it failed or was cancelled."""
        return self._jobs.run(button, job, self._showProgress,
                              lambda label: slicer.util.tryWithErrorDisplay(_("{task} failed.").format(task=label)),
                              _("Cancel"), lambda: self._status(_("Cancelled: nothing was added to the scene.")))

    def _showProgress(self, fraction: float, message: str) -> None:
        bar = self.ui.reconProgressBar if self._jobs.running is self.ui.reconstructButton else self.ui.simulateProgressBar
        bar.value = int(round(100 * fraction))
        self._status(message)
        slicer.app.processEvents()

    def _status(self, message: str) -> None:
        label = self.ui.reconStatusLabel if self._jobs.running is self.ui.reconstructButton else self.ui.simulateStatusLabel
        label.text = message

    def onReconstructButton(self) -> None:
        if self._jobs.request_cancel(self.ui.reconstructButton):
            return
        if not torchReady():
            self.ui.reconStatusLabel.text = _("PyTorch is needed to reconstruct; it was not installed.")
            return
        modelPath = self.ui.modelPathLineEdit.currentPath or None
        withChangeMap = self._parameterNode.changeMap  # as the job reads it (the box may change while it runs)
        output = self._run(self.ui.reconstructButton, lambda progress, cancel: self.logic.reconstruct(
            self._parameterNode, modelPath, progress=progress, cancel=cancel))
        if output is not None:
            # the change map over the output; without one, no (earlier) change map stays on top
            changeMap = output.GetNodeReference(CHANGE_MAP_REFERENCE) if withChangeMap else None
            slicer.util.setSliceViewerLayers(background=output, foreground=changeMap,
                                             foregroundOpacity=CHANGE_MAP_OPACITY if changeMap is not None else None,
                                             fit=True)
            self.ui.reconStatusLabel.text = _("Created {name}").format(name=output.GetName()) if changeMap is None \
                else _("Created {name} and {changeMap}, shown over it").format(name=output.GetName(),
                                                                              changeMap=changeMap.GetName())

    def onSimulateButton(self) -> None:
        if self._jobs.request_cancel(self.ui.simulateButton):
            return
        output = self._run(self.ui.simulateButton, lambda progress, cancel: self.logic.simulate(
            self._parameterNode, progress=progress, cancel=cancel))
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

    # -- reader study ---------------------------------------------------------------------------------------
    def onAddCase(self) -> None:
        nodes = [self.ui.studyFullSelector.currentNode(), self.ui.studyUndersampledSelector.currentNode(),
                 self.ui.studyDnnSelector.currentNode()]
        if None in nodes or len({node.GetID() for node in nodes}) != len(nodes):
            slicer.util.errorDisplay(_("Select three different volumes: full, undersampled and DNN."))
            return
        self._pendingCases.append(nodes)
        self.ui.pendingCasesLabel.text = _("{count} case(s) ready").format(count=len(self._pendingCases))
        self.ui.createStudyButton.enabled = True

    def onCreateStudy(self) -> None:
        path = self.ui.studyPathLineEdit.currentPath
        if not path:
            slicer.util.errorDisplay(_("Choose a study file name (.sqlite) first."))
            return
        with slicer.util.tryWithErrorDisplay(_("Creating the study failed."), waitCursor=True):
            create_study_from_nodes(path, os.path.splitext(os.path.basename(path))[0], STUDY_METHODS,
                                    self._pendingCases, seed=secrets.randbelow(2**31)).close()
            self._pendingCases = []
            self.ui.createStudyButton.enabled = False
            self.ui.pendingCasesLabel.text = _("Created {path}").format(path=path)

    def onStartReading(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Opening the study failed.")):
            self._closeStudy()
            layoutManager = slicer.app.layoutManager()
            if layoutManager is None:  # e.g. --no-main-window
                raise InputError(_("The reader study needs Slicer's main window (its slice views)."))
            self._study = ReaderStudy.open(self.ui.studyPathLineEdit.currentPath)
            self._enterReaderLayout(layoutManager)
            self._showNextCase()

    def onScore(self, label: str, index: int) -> None:
        if self._study is None or self._case is None or index == 0:
            return
        with slicer.util.tryWithErrorDisplay(_("Saving the score failed.")):
            score = sorted(LIKERT, reverse=True)[index - 1]
            self._study.record(self._parameterNode.readerName, self._case, label, score)
            self._updateScoreState()

    def onNextCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Loading the next case failed.")):
            self._showNextCase()

    def onFinishReading(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Summarising the study failed.")):
            summary = self._study.summary()
            self._closeStudy()
            summary_table_node(slicer.mrmlScene, summary)
            slicer.modules.plots.logic().ShowChartInLayout(summary_chart_node(slicer.mrmlScene, summary))

    def _showNextCase(self) -> None:
        reader = self._parameterNode.readerName
        self._removeCaseNodes()
        self._case = self._study.next_case(reader)
        if self._case is None:
            self.ui.caseLabel.text = _("All {count} cases scored. Finish to see the summary.").format(
                count=len(self._study.cases))
        else:
            self._caseNodes = load_blinded_case(slicer.mrmlScene, self._study, self._case, reader)
            apply_window(self._caseNodes.values(),
                         common_window([slicer.util.arrayFromVolume(node) for node in self._caseNodes.values()]))
            show_blinded(slicer.mrmlScene, [node.GetID() for node in self._caseNodes.values()])
            slicer.util.resetSliceViews()
            self.ui.caseLabel.text = _("{case}: {remaining} of {count} cases left to score").format(
                case=self._case, remaining=self._study.remaining(reader), count=len(self._study.cases))
        for box in self._scoreBoxes.values():
            box.currentIndex = 0
        self._updateScoreState()

    def _updateScoreState(self) -> None:
        reading = self._study is not None and self._case is not None
        given = self._study.reader_scores(self._parameterNode.readerName, self._case) if reading else {}
        for label, box in self._scoreBoxes.items():
            box.enabled = reading
            if label in given:
                box.currentIndex = sorted(LIKERT, reverse=True).index(given[label]) + 1
        self.ui.nextCaseButton.enabled = reading and len(given) == len(STUDY_METHODS)
        self.ui.finishReadingButton.enabled = self._study is not None
        self.ui.readerStatusLabel.text = _("Scores saved: {count} of {total}").format(
            count=len(given), total=len(STUDY_METHODS)) if reading else ""

    def _enterReaderLayout(self, layoutManager) -> None:
        """The reader layout: Red, Yellow, Green relabelled A, B, C, all axial; their state is restored after."""
        install_reader_layout(layoutManager.layoutLogic().GetLayoutNode())
        self._savedViews = SavedViews.save(slicer.mrmlScene)
        self._savedViewArrangement = layoutManager.layout
        layoutManager.setLayout(READER_LAYOUT_ID)
        annotations = self._sliceAnnotations()
        if annotations is not None:
            self._savedAnnotations = annotations.sliceViewAnnotationsEnabled
            annotations.sliceViewAnnotationsEnabled = False
            annotations.updateSliceViewFromGUI()
        for name in VIEW_NAMES:
            sliceWidget = layoutManager.sliceWidget(name)
            sliceWidget.sliceController().setVisible(False)
            sliceWidget.sliceView().cornerAnnotation().ClearAllTexts()
            sliceWidget.sliceView().forceRender()

    def _closeStudy(self) -> None:
        self._removeCaseNodes()
        if self._study is not None:
            self._study.close()
            self._study, self._case = None, None
        layoutManager = slicer.app.layoutManager()
        if self._savedViewArrangement is not None and layoutManager is not None:
            for name in VIEW_NAMES:
                if layoutManager.sliceWidget(name):
                    layoutManager.sliceWidget(name).sliceController().setVisible(True)
            annotations = self._sliceAnnotations()
            if annotations is not None and self._savedAnnotations is not None:
                annotations.sliceViewAnnotationsEnabled = self._savedAnnotations
                annotations.updateSliceViewFromGUI()
            layoutManager.setLayout(self._savedViewArrangement)
            self._savedViews.restore(slicer.mrmlScene)  # after the layout: it leaves the views relabelled
            self._savedViewArrangement, self._savedViews, self._savedAnnotations = None, None, None
        if hasattr(self, "_scoreBoxes"):
            self._updateScoreState()

    @staticmethod
    def _sliceAnnotations():
        """The DataProbe module's slice-view annotations (it makes them only with the main window), or None."""
        infoWidget = getattr(getattr(slicer.modules, "DataProbeInstance", None), "infoWidget", None)
        return infoWidget.sliceAnnotations if infoWidget is not None else None

    def _removeCaseNodes(self) -> None:
        for node in self._caseNodes.values():
            if slicer.mrmlScene.IsNodePresent(node):
                slicer.mrmlScene.RemoveNode(node)
        self._caseNodes = {}


class FastMRReconLogic(ScriptedLoadableModuleLogic):
    """Can be used without the GUI; all computation is in FastMRReconLib."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._reconstructors = {}

    def getParameterNode(self):
        return FastMRReconParameterNode(super().getParameterNode())

    def reconstructor(self, modelPath: Optional[str] = None, device: str = "auto"):
        """The network in ``modelPath`` (None: the shipped model) on ``device``, loaded once."""
        from FastMRReconLib.model.reconstructor import Reconstructor

        key = (modelPath, device)
        if key not in self._reconstructors:
            self._reconstructors[key] = Reconstructor.load(modelPath, device=device)
        return self._reconstructors[key]

    def reconstruct(self, parameters: FastMRReconParameterNode, modelPath: Optional[str] = None, progress=None,
                    cancel=None):
        """The network's reconstruction of ``parameters.reconInputVolume`` in ``reconOutputVolume`` (or a new
        volume "<input> DNN", which becomes the output), at ``parameters.strength`` with ``noiseSD`` when
        ``setNoiseSD`` (else the measured noise); with ``changeMap`` the output references a new change-map
        volume as ``CHANGE_MAP_REFERENCE``. Bad settings raise InputError before the model is loaded."""
        noiseSD, strength = noise_arguments(parameters.strength,
                                            parameters.noiseSD if parameters.setNoiseSD else None)
        output = reconstruct_volume_node(parameters.reconInputVolume, self.reconstructor(modelPath, parameters.device),
                                         output=parameters.reconOutputVolume, progress=progress, cancel=cancel,
                                         noise_sd=noiseSD, strength=strength, change_map=parameters.changeMap)
        parameters.reconOutputVolume = output
        return output

    def simulate(self, parameters: FastMRReconParameterNode, progress=None, cancel=None):
        """A new volume: the simulated accelerated scan of ``parameters.inputVolume``."""
        config = AcquisitionConfig(acceleration=parameters.acceleration, mask=parameters.mask,
                                   center_fraction=parameters.centerFraction, coils=parameters.coils,
                                   averages=parameters.averages, snr=parameters.snr,
                                   resolution=(parameters.resolutionRows, parameters.resolutionColumns),
                                   seed=parameters.seed)
        logging.info("FastMRRecon: simulating %s", config)
        return simulate_volume_node(parameters.inputVolume, config, combine=parameters.combine, progress=progress,
                                    cancel=cancel)

    def roiTable(self, parameters: FastMRReconParameterNode, volumes):
        """A new table of ROI statistics of ``volumes`` (reference: ``parameters.roiReference``, or the first)."""
        rows = compare_volumes(volumes, parameters.roiPoints, reference=parameters.roiReference, size=parameters.roiSize)
        table = roi_table_node(parameters.roiPoints.GetScene(), rows)
        parameters.roiTable = table
        return table


class FastMRReconTest(ScriptedLoadableModuleTest):
    """Runs in Slicer on the module's sample data (registered with SampleData)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_sample_simulate_reconstruct_roi_study()

    def test_sample_simulate_reconstruct_roi_study(self):
        import tempfile

        import numpy as np
        import SampleData

        from FastMRICommon.mrml_nodes import geometry_of

        registerSampleData()
        full = SampleData.downloadSample(MODULE_SAMPLE_NAME)
        self.assertIsNotNone(full)
        logic = FastMRReconLogic()
        parameters = logic.getParameterNode()
        parameters.inputVolume = full
        parameters.acceleration = 2.0
        undersampled = logic.simulate(parameters)
        self.assertTrue(geometry_of(undersampled).matches(geometry_of(full)))
        if not torchReady():
            self.fail("PyTorch is needed for this test")
        parameters.reconInputVolume = undersampled
        dnn = logic.reconstruct(parameters)
        self.assertEqual(dnn.GetName(), f"{undersampled.GetName()} DNN")
        result = slicer.util.arrayFromVolume(dnn)
        self.assertEqual(result.shape, slicer.util.arrayFromVolume(full).shape)
        self.assertTrue(np.all(np.isfinite(result)) and result.min() >= 0)

        # strength high with a change map (referenced from its output); a bad noise SD is refused with a
        # message before anything is added to the scene
        from FastMRICommon.errors import InputError

        parameters.reconOutputVolume = None
        parameters.strength, parameters.changeMap = "high", True
        strong = logic.reconstruct(parameters)
        changeMap = strong.GetNodeReference(CHANGE_MAP_REFERENCE)
        self.assertIsNotNone(changeMap)
        self.assertTrue(slicer.util.arrayFromVolume(changeMap).min() >= 0)
        parameters.setNoiseSD, parameters.noiseSD = True, 0.0
        count = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(InputError):
            logic.reconstruct(parameters)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), count)
        parameters.strength, parameters.setNoiseSD, parameters.changeMap = "medium", False, False

        # ROI points: homogeneous tissue, then the background first far out in air (zero in SENSE images:
        # a clear error) and then in air next to the head, where the images have noise
        from FastMRReconLib.study.roi_table import homogeneous_roi_points, noisy_air_point

        arrays = [slicer.util.arrayFromVolume(node) for node in (full, undersampled, dnn)]
        roi1, roi2 = homogeneous_roi_points(arrays[0], 4)
        matrix = vtk.vtkMatrix4x4()
        full.GetIJKToRASMatrix(matrix)
        points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "ROI points")
        for ijk in (roi1, roi2, (4, 4, roi1[2])):
            points.AddControlPoint(vtk.vtkVector3d(*matrix.MultiplyPoint([float(v) for v in ijk] + [1.0])[:3]))
        parameters.roiPoints = points
        parameters.roiReference = full
        with self.assertRaises(InputError):
            logic.roiTable(parameters, [full, undersampled, dnn])
        background = noisy_air_point(np.where(arrays[0] > 0.02 * arrays[0].max(), arrays[0], 0), arrays, 4)
        points.SetNthControlPointPosition(2, *matrix.MultiplyPoint([float(v) for v in background] + [1.0])[:3])
        table = logic.roiTable(parameters, [full, undersampled, dnn])
        self.assertEqual(table.GetNumberOfRows(), 3)

        # the reader layout needs the main window; without one (--no-main-window) it is refused, not a crash
        layoutManager = slicer.app.layoutManager()
        layoutNode = layoutManager.layoutLogic().GetLayoutNode() if layoutManager is not None else None
        self.assertEqual(install_reader_layout(layoutNode), layoutManager is not None)

        # a blinded reader study of this case, scored and summarised
        folder = tempfile.mkdtemp()
        study = create_study_from_nodes(os.path.join(folder, "study.sqlite"), "test", STUDY_METHODS,
                                        [[full, undersampled, dnn]], seed=1)
        case = study.next_case("tester")
        nodes = load_blinded_case(slicer.mrmlScene, study, case, "tester")
        self.assertEqual(sorted(nodes), ["A", "B", "C"])
        for label in nodes:
            study.record("tester", case, label, 4)
        self.assertIsNone(study.next_case("tester"))
        summary = study.summary()
        self.assertEqual({row.method for row in summary}, set(STUDY_METHODS))
        study.close()
        self.delayDisplay("Test passed")
