"""IVIMEstimator: IVIM maps (f, D, D*) from multi-b diffusion series, with motion correction, a voxel inspector,
statistics, export and retraining for any protocol. Thin Slicer module: the widget wires the .ui to the
parameter node and to the logic, whose state and computation are IVIMEstimatorLib's (``session.IvimSession``)."""

import os
from typing import Union

import slicer
import vtk
from slicer import (
    vtkMRMLDiffusionWeightedVolumeNode,
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLSequenceNode,
    vtkMRMLVectorVolumeNode,
)
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
from FastMRICommon.gui_binding import ParameterGui
from FastMRICommon.reload import forget_packages
from FastMRICommon.settings import settings_parameters
from IVIMEstimatorLib.fits.methods import needs_torch
from IVIMEstimatorLib.map_logic import EstimateConfig, ExportSettings, VoxelPoint, export_maps
from IVIMEstimatorLib.session import IvimSession, estimate_config, series_source
from IVIMEstimatorLib.training.config import TrainingConfig


class IVIMEstimator(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("IVIM Estimator")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Fast MRI")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerFastMRI developers"]
        self.parent.helpText = _("""
Estimates intravoxel incoherent motion (IVIM) maps: perfusion fraction f, diffusion D and pseudo-diffusion
D* (shown in 10⁻³ mm²/s) and S0, with a fit-residual map, from a diffusion series (sequence, multi-volume or
diffusion-weighted node). b-values are read from the data when stored there, otherwise typed here (s/mm², one
per volume). Methods: SCDNN (sparse-coding network, default), MLP, IVIM-NET, segmented NLLS, Bayesian (with SD
maps). Optional motion correction (rigid + affine to a mean template). Place a point to inspect a voxel's fit.
See the <a href="https://github.com/SlicerFastMRI/SlicerFastMRI#ivimestimator">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Reference IVIM signals for testing: OSIPI TF2.4 IVIM code collection (Apache-2.0).
""")


#: DICOM multi-volumes are MultiVolumeExplorer's vtkMRMLMultiVolumeNode: Slicer bundles it, but slicer-core and
#: Slicer builds without multi-volume support lack it; there the series selector offers the other node classes.
vtkMRMLMultiVolumeNode = getattr(slicer, "vtkMRMLMultiVolumeNode", vtkMRMLVectorVolumeNode)


@parameterNodeWrapper
@settings_parameters((EstimateConfig, ExportSettings), WithinRange, Choice)
@settings_parameters(
    (TrainingConfig,), WithinRange, Choice, skip=("method", "prior", "samples", "epochs", "seed", "snr_loss_power")
)
class IVIMEstimatorParameterNode:
    """The module's state, saved with the scene: the settings of EstimateConfig (method, bvalueSet, motionCorrection,
    autoMask, prior, device), ExportSettings (exportFormat) and TrainingConfig (trainingSnrLow/High), with their
    defaults, choices and ranges (FastMRICommon.settings), and these fields:

    inputSeries - a sequence, diffusion-weighted or multi-volume node; bvalues - typed b-values (s/mm², comma
    separated; empty = those stored in the data); maskNode - label map or segmentation; modelPath - network model
    file (empty = the shipped one); statsRegion - region of the statistics table.

    Node fields name the concrete classes their selector offers, as ``typing.Union[..., None]``: Slicer's
    node-combobox connector (parameterNodeWrapper, 5.8 and 5.10) instantiates each class to set the
    selector's node types, recognises only ``typing.Union`` (not ``A | B``), and None lets the selector show
    "None".
    """

    inputSeries: Union[
        vtkMRMLSequenceNode, vtkMRMLDiffusionWeightedVolumeNode, vtkMRMLVectorVolumeNode, vtkMRMLMultiVolumeNode, None
    ]
    bvalues: str = ""
    maskNode: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode, None]
    modelPath: str = ""
    statsRegion: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode, None]


class IVIMEstimatorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        # the logic, the parameter node and the GUI's binding to it (ParameterGui) are set up with the GUI
        self.logic, self._parameterNode, self._parameterGui = None, None, None
        self._jobs = ButtonJobs(self._updateState)  # the job in progress (its button reads Cancel)
        self._voxelPoint = None  # the voxel inspector's point list, followed from list to list (VoxelPoint)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/IVIMEstimator.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = IVIMEstimatorLogic()
        self._parameterGui = ParameterGui(self.ui)
        self._voxelPoint = VoxelPoint(slicer.mrmlScene, self.onVoxelPlaced, self.ui.voxelPlaceWidget.setCurrentNode)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.volumesSelector.connect("checkedNodesChanged()", self._updateState)
        self.ui.estimateButton.connect("clicked(bool)", self.onEstimateButton)
        self.ui.retrainButton.connect("clicked(bool)", self.onRetrainButton)
        self.ui.statisticsButton.connect("clicked(bool)", self.onStatisticsButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        if self._parameterGui:
            self._parameterGui.unbind()
        if self._voxelPoint:
            self._voxelPoint.close()

    def enter(self) -> None:
        self.initializeParameterNode()

    def onReload(self) -> None:
        """Slicer's Reload re-runs this file only (``slicer.util.reloadScriptedModule``): IVIMEstimatorLib is
        forgotten first, so that it imports its edited code too (FastMRICommon is shared with FastMRRecon and
        stays: its classes, e.g. InputError, must stay one class for both modules; restart Slicer after changing
        it)."""
        forget_packages(("IVIMEstimatorLib",))
        ScriptedLoadableModuleWidget.onReload(self)

    def exit(self) -> None:
        # The GUI stays bound to the parameter node while hidden: binding it again on each entry would pile up
        # observers (FastMRICommon.gui_binding). The voxel inspector stops following placements (VoxelPoint).
        self._voxelPoint.close()

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._voxelPoint.close()
        self.logic.forget()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputSeries and slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSequenceNode"):
            self._parameterNode.inputSeries = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSequenceNode")
        self._voxelPoint.ensure()

    def setParameterNode(self, inputParameterNode: IVIMEstimatorParameterNode | None) -> None:
        if self._parameterNode:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
        # the same parameter node keeps its binding (and wrapper); another one is bound afresh
        self._parameterNode = self._parameterGui.bind(inputParameterNode)
        if self._parameterNode:
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateState)
            self._updateState()

    def _updateState(self, caller=None, event=None) -> None:
        """Series summary, and which buttons can be used (the retrain offer appears when no network fits)."""
        parameters, jobs = self._parameterNode, self._jobs
        state = self.logic.readiness(self._source(), parameters)
        self.ui.seriesSummaryLabel.text = state.summary or _("Select a diffusion series, or check its volumes")
        self.ui.estimateButton.enabled = jobs.enabled(self.ui.estimateButton, state.ready)
        self.ui.retrainButton.enabled = jobs.enabled(self.ui.retrainButton, state.needs_model)
        if state.needs_model and jobs.idle:
            self.ui.statusLabel.text = _(
                "No shipped {method} network for these b-values: train one for this protocol, or choose NLLS / Bayes."
            ).format(method=parameters.method)
        hasMaps = bool(self.logic.map_nodes) and jobs.idle
        self.ui.statisticsButton.enabled = hasMaps
        self.ui.exportButton.enabled = hasMaps

    # -- long jobs ------------------------------------------------------------------------------------------
    def _run(self, button, job):
        """Run ``job(progress, cancel)`` with ``button`` turned into Cancel; errors in a message box."""
        return self._jobs.run(
            button,
            job,
            self._showProgress,
            lambda label: slicer.util.tryWithErrorDisplay(_("{task} failed.").format(task=label)),
            _("Cancel"),
            lambda: setattr(self.ui.statusLabel, "text", _("Cancelled: nothing was added to the scene.")),
        )

    def _showProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message
        slicer.app.processEvents()

    def _source(self):
        """The series node, or else the checked scalar volumes (a list), or None."""
        series = self._parameterNode.inputSeries if self._parameterNode else None
        return series_source(series, self.ui.volumesSelector.checkedNodes())

    def _torchReady(self) -> bool:
        """True when the method can run: it needs no torch, or torch is there (after asking to install it)."""
        return not needs_torch(self._parameterNode.method) or ensure_torch_with_pytorch_utils(
            slicer.util.confirmOkCancelDisplay
        )

    def onEstimateButton(self) -> None:
        if self._jobs.request_cancel(self.ui.estimateButton):
            return
        if not self._torchReady():
            self.ui.statusLabel.text = _("PyTorch is needed for this method; it was not installed.")
            return
        source, parameters = self._source(), self._parameterNode
        nodes = self._run(
            self.ui.estimateButton,
            lambda progress, cancel: self.logic.estimate(
                source, estimate_config(parameters), parameters.bvalues, parameters.maskNode, progress, cancel
            ),
        )
        if nodes:
            slicer.util.setSliceViewerLayers(background=nodes["f"], fit=True)
            self.ui.statusLabel.text = "; ".join([_("Created {n} maps").format(n=len(nodes)), *self.logic.fit_notes()])
            self.onStatisticsButton()

    def onRetrainButton(self) -> None:
        if self._jobs.request_cancel(self.ui.retrainButton):
            return
        parameters = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Training failed.")):
            training = self.logic.protocol_training(
                self._source(), parameters, os.path.dirname(slicer.app.slicerUserSettingsFilePath)
            )
            if training.exists:  # trained before for this protocol and these settings
                parameters.modelPath = str(training.path)
                return
            config = training.config
            if (
                not slicer.util.confirmOkCancelDisplay(
                    _(
                        "Train a {method} network for b = {bvalues} s/mm² on synthetic signals ({prior} prior, "
                        "SNR {low:g}-{high:g}) on {device}? This takes several minutes; it can be cancelled."
                    ).format(
                        method=config.method,
                        bvalues=", ".join(f"{b:g}" for b in config.bvalues),
                        prior=config.prior,
                        low=config.snr_low,
                        high=config.snr_high,
                        device=training.device,
                    )
                )
                or not self._torchReady()
            ):
                return
        trained = self._run(self.ui.retrainButton, training.run)
        if trained:
            parameters.modelPath = str(trained)
            self.ui.statusLabel.text = _("Trained {path}; it is used from now on").format(path=trained)

    # -- results --------------------------------------------------------------------------------------------
    def onStatisticsButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Statistics failed.")):
            table = self.logic.statistics(self._parameterNode.statsRegion)
            self.ui.statisticsTableView.setMRMLTableNode(table)

    def onExportButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
            written = export_maps(
                self.logic.map_nodes, self.ui.exportDirectoryButton.directory, self._parameterNode.exportFormat
            )
            self.ui.statusLabel.text = _("Exported {count} maps to {folder}").format(
                count=len(written), folder=self.ui.exportDirectoryButton.directory
            )

    def onVoxelPlaced(self, position) -> None:
        """The voxel point was placed or moved to the world position ``position``: plot that voxel's fit."""
        if self.logic.result is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Voxel inspection failed.")):
            chart, voxel = self.logic.inspect(position)
            slicer.modules.plots.logic().ShowChartInLayout(chart)
            text = _("voxel {ijk}: f {f:.3f}, D {D:.3f}, D* {Dstar:.1f} (10⁻³ mm²/s), residual {residual:.3f}")
            self.ui.voxelLabel.text = text.format(ijk=voxel.ijk, **voxel.values)


class IVIMEstimatorLogic(ScriptedLoadableModuleLogic, IvimSession):
    """Usable without the GUI: its state and computation are IvimSession's; this class adds the parameter node."""

    def getParameterNode(self):
        return IVIMEstimatorParameterNode(super().getParameterNode())


class IVIMEstimatorTest(ScriptedLoadableModuleTest):
    """Runs in Slicer on the placenta phantom (the scenario: IVIMEstimatorLib.self_test)."""

    def runTest(self):
        from IVIMEstimatorLib.self_test import run_module_scenario

        slicer.mrmlScene.Clear()
        run_module_scenario(self, IVIMEstimatorLogic(), slicer.mrmlScene)
