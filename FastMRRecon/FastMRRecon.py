"""FastMRRecon: deep-learning reconstruction of accelerated MR images (thin Slicer module; the engine is
FastMRReconLib)."""

import logging
from typing import Annotated, Optional

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

from slicer import vtkMRMLScalarVolumeNode

from FastMRReconLib.masks import MASKS
from FastMRReconLib.simulate import AcquisitionConfig
from FastMRReconLib.volume_logic import simulate_volume_node


class FastMRRecon(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Fast MR Recon")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Fast MRI")]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerFastMRI developers"]
        self.parent.helpText = _("""
Reconstructs accelerated (undersampled) MR images with a deep network (residual U-Net + fidelity network),
measures ROI SNR/CNR and runs blinded reader studies. The <b>Simulate</b> section makes an accelerated
counterpart of a fully sampled volume (multi-coil Cartesian undersampling, noise per number of averages).
See the <a href="https://github.com/SlicerFastMRI/SlicerFastMRI#fastmrrecon">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
Head sample data are synthesised from nilearn's MNI152 maps or SynthSeg label maps (Apache-2.0).
""")


@parameterNodeWrapper
class FastMRReconParameterNode:
    """The module's state, saved with the scene.

    inputVolume - fully sampled volume to simulate an accelerated scan from.
    acceleration - undersampling factor R; averages, coils, snr, mask, seed - see AcquisitionConfig.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    acceleration: Annotated[float, WithinRange(1.0, 8.0)] = 2.0
    averages: Annotated[int, WithinRange(1, 8)] = 1
    coils: Annotated[int, WithinRange(1, 32)] = 8
    snr: Annotated[float, WithinRange(1.0, 1000.0)] = 30.0
    mask: Annotated[str, Choice(sorted(MASKS))] = "equispaced"
    seed: Annotated[int, WithinRange(0, 1000000)] = 0


class FastMRReconWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/FastMRRecon.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = FastMRReconLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.simulateButton.connect("clicked(bool)", self.onSimulateButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[FastMRReconParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.simulateButton.enabled = ready
        self.ui.simulateButton.toolTip = _("Simulate the accelerated scan") if ready else _("Select an input volume")

    def onSimulateButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Simulation failed."), waitCursor=True):
            output = self.logic.simulate(self._parameterNode, progress=self._showProgress)
            slicer.util.setSliceViewerLayers(background=output, fit=True)
            self.ui.statusLabel.text = _("Created {name}").format(name=output.GetName())

    def _showProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message
        slicer.app.processEvents()


class FastMRReconLogic(ScriptedLoadableModuleLogic):
    """Can be used without the GUI; all computation is in FastMRReconLib."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return FastMRReconParameterNode(super().getParameterNode())

    def simulate(self, parameters: FastMRReconParameterNode, progress=None, cancel=None):
        """A new volume: the simulated accelerated scan of ``parameters.inputVolume``."""
        config = AcquisitionConfig(acceleration=parameters.acceleration, mask=parameters.mask,
                                   coils=parameters.coils, averages=parameters.averages, snr=parameters.snr,
                                   seed=parameters.seed)
        logging.info("FastMRRecon: simulating %s", config)
        return simulate_volume_node(parameters.inputVolume, config, progress=progress, cancel=cancel)


class FastMRReconTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_simulate_keeps_geometry()

    def test_simulate_keeps_geometry(self):
        """Simulating an R=2 scan of a synthetic head slab gives a new volume on the same grid."""
        import numpy as np
        from FastMRICommon.mrml_bridge import geometry_of, new_volume_node
        from FastMRReconLib.head_synthesis import PROTOCOLS, synthesize
        from FastMRReconLib.sample_data import head_slab_maps

        maps, _origin = head_slab_maps(slices=4, source="mni152")
        image = synthesize(maps, PROTOCOLS["T2w"])
        inputVolume = new_volume_node(slicer.mrmlScene, image, maps.geometry, "head T2w")
        logic = FastMRReconLogic()
        parameters = logic.getParameterNode()
        parameters.inputVolume = inputVolume
        output = logic.simulate(parameters)
        self.assertNotEqual(output.GetID(), inputVolume.GetID())
        self.assertTrue(geometry_of(output).matches(geometry_of(inputVolume)))
        result = slicer.util.arrayFromVolume(output)
        self.assertEqual(result.shape, image.shape)
        self.assertGreater(np.corrcoef(result.ravel(), image.ravel())[0, 1], 0.8)
        self.delayDisplay("Test passed")
