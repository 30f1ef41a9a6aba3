"""The IVIMEstimator module's logic on a real MRML scene: maps from the series nodes Slicer holds, masks
(label map, segmentation, automatic), b-value subsets, map nodes with units, statistics table, voxel
inspector (and the point list it follows), export, the demo, 4D NIfTI input, and how the module widget uses
the shared GUI helpers."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import vtk
from conftest import placing_scene
from slicer.util import arrayFromVolume

from FastMRICommon.errors import Cancelled, InputError
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.mrml_nodes import geometry_of, new_volume_node
from FastMRICommon.volume_files import read_volume_array
from IVIMEstimatorLib.diffusion_series import DiffusionSeries, new_sequence_node, read_series_array
from IVIMEstimatorLib.fits.model import IvimFit
from IVIMEstimatorLib.map_logic import (
    EXPORT_FORMATS,
    MAP_SPECS,
    STAT_COLUMNS,
    EstimateConfig,
    VoxelPoint,
    automatic_mask,
    estimate_maps,
    export_maps,
    fit_residual,
    map_nodes,
    map_statistics,
    select_bvalues,
    statistics_table_node,
    voxel_chart_node,
    voxel_fit,
)
from IVIMEstimatorLib.phantoms.phantom import LABELS, placenta_phantom
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES


@pytest.fixture(scope="module")
def phantom():
    return placenta_phantom(shape=(3, 40, 40), snr=40.0, seed=2)


@pytest.fixture
def sequence(scene, phantom):
    return new_sequence_node(scene, phantom.series, "placenta")


def test_maps_from_a_sequence_node_in_display_units(scene, phantom, sequence):
    before = [arrayFromVolume(sequence.GetNthDataNode(n)).copy() for n in range(sequence.GetNumberOfDataNodes())]
    result = estimate_maps(sequence, EstimateConfig(method="mlp", auto_mask=True))
    assert set(result.maps) == {"f", "D", "Dstar", "S0", "f_sd", "D_sd", "Dstar_sd", "residual"}
    assert result.fit.noise.source == "background" and result.fit.noise.sd * 40.0 == pytest.approx(1.0, rel=0.1)
    placenta = phantom.labels == LABELS["placenta"]
    inside = placenta & np.isfinite(result.maps["D"])
    assert inside.sum() > 0.9 * placenta.sum()
    # D and D* are shown in 10^-3 mm²/s: the truth in mm²/s times 1000
    assert np.median(result.maps["D"][inside]) == pytest.approx(np.median(phantom.D[inside]) * 1e3, rel=0.25)
    assert np.median(result.maps["f"][inside]) == pytest.approx(np.median(phantom.f[inside]), rel=0.25)
    assert np.all(np.isnan(result.maps["f"][~result.mask]))
    for n, array in enumerate(before):
        np.testing.assert_array_equal(arrayFromVolume(sequence.GetNthDataNode(n)), array)


def test_bvalue_subsets(phantom):
    accelerated = select_bvalues(phantom.series, "accelerated")
    np.testing.assert_array_equal(accelerated.bvalues, ACCELERATED_BVALUES)
    keep = np.isin(ACQUIRED_BVALUES, ACCELERATED_BVALUES)
    np.testing.assert_array_equal(accelerated.volumes, phantom.series.volumes[keep])
    assert select_bvalues(phantom.series, "all") is phantom.series
    lacking = DiffusionSeries(phantom.series.volumes[:-1], ACQUIRED_BVALUES[:-1], phantom.series.geometry)
    with pytest.raises(InputError, match="b = 500"):
        select_bvalues(lacking, "accelerated")
    with pytest.raises(InputError, match="unknown b-value set"):
        select_bvalues(phantom.series, "some")


def test_label_map_and_segmentation_masks(scene, phantom, sequence):
    import slicer

    placenta = (phantom.labels == LABELS["placenta"]).astype(np.int16)
    labels = new_volume_node(scene, placenta, phantom.series.geometry, "placenta label", "vtkMRMLLabelMapVolumeNode")
    result = estimate_maps(sequence, EstimateConfig(method="mlp"), mask_node=labels)
    np.testing.assert_array_equal(np.isfinite(result.maps["f"]), placenta.astype(bool))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "placenta segmentation")
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, segmentation)

    def nodes():
        return {
            scene.GetNthNode(n).GetID()
            for n in range(scene.GetNumberOfNodes())
            if not scene.GetNthNode(n).IsA("vtkMRMLSubjectHierarchyNode")
        }

    before = nodes()
    from_segments = estimate_maps(sequence, EstimateConfig(method="mlp"), mask_node=segmentation)
    np.testing.assert_array_equal(from_segments.mask, placenta.astype(bool))
    assert nodes() == before  # the temporary label map and its colours are gone
    shifted = VolumeGeometry(phantom.series.geometry.spacing, (5.0, 0.0, 0.0), phantom.series.geometry.directions)
    other_grid = new_volume_node(scene, placenta, shifted, "elsewhere", "vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="another grid"):
        estimate_maps(sequence, EstimateConfig(method="mlp"), mask_node=other_grid)
    empty = new_volume_node(scene, placenta * 0, phantom.series.geometry, "empty", "vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="is empty"):
        estimate_maps(sequence, EstimateConfig(method="mlp"), mask_node=empty)
    no_segments = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "nothing")
    with pytest.raises(InputError, match="no segments"):
        estimate_maps(sequence, EstimateConfig(method="mlp"), mask_node=no_segments)
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "a table")
    with pytest.raises(InputError, match="not a label map"):
        estimate_maps(sequence, EstimateConfig(method="mlp"), mask_node=table)


def test_automatic_mask_finds_the_object(phantom):
    mask = automatic_mask(phantom.series)
    body = phantom.labels > 0
    dice = 2 * (mask & body).sum() / (mask.sum() + body.sum())
    assert dice > 0.9


def test_wrong_inputs_are_refused(scene, phantom, sequence):
    labels = new_volume_node(scene, phantom.labels, phantom.series.geometry, "labels", "vtkMRMLLabelMapVolumeNode")
    with pytest.raises(InputError, match="expected a sequence"):
        estimate_maps(labels, EstimateConfig(method="mlp"))
    with pytest.raises(InputError, match="method must be one of scdnn, .*; got 'magic'"):
        estimate_maps(sequence, EstimateConfig(method="magic"))
    with pytest.raises(InputError):
        estimate_maps(sequence, EstimateConfig(method="mlp"), bvalues_text="0, 10, 20")  # 3 values, 10 volumes


def test_fit_residual_is_zero_for_the_true_maps():
    truth = placenta_phantom(shape=(2, 24, 24), snr=1e9, seed=1)
    residual = fit_residual(truth.series, IvimFit(truth.f, truth.D, truth.Dstar, truth.S0))
    tissue = truth.labels > 0
    assert np.nanmax(residual[tissue]) < 1e-6


def test_map_nodes_statistics_voxel_and_export(scene, phantom, sequence, tmp_path):
    result = estimate_maps(sequence, EstimateConfig(method="mlp", auto_mask=True))
    nodes = map_nodes(scene, result, "placenta")
    assert nodes["D"].GetName() == "placenta D [10^-3 mm2/s]"
    assert nodes["Dstar"].GetName() == "placenta D* [10^-3 mm2/s]"
    assert nodes["f"].GetAttribute("IVIM.unit") == "fraction"
    for key, node in nodes.items():
        assert geometry_of(node).matches(phantom.series.geometry)
        np.testing.assert_allclose(arrayFromVolume(node), np.nan_to_num(result.maps[key]), rtol=1e-6)
    display = nodes["D"].GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == pytest.approx((3.0, 1.5))

    placenta = phantom.labels == LABELS["placenta"]
    rows = map_statistics(result.maps, placenta)
    by_name = {row[0]: row for row in rows}
    values = result.maps["D"][placenta & np.isfinite(result.maps["D"])]
    assert by_name["D"][1] == "10^-3 mm2/s" and by_name["D"][2] == pytest.approx(values.mean())
    assert by_name["D"][3] == pytest.approx(values.std(ddof=1)) and by_name["D"][4] == values.size
    table = statistics_table_node(scene, rows)
    assert table.GetNumberOfRows() == len(rows) and table.GetNumberOfColumns() == len(STAT_COLUMNS)
    with pytest.raises(InputError, match="no fitted voxel"):
        map_statistics(result.maps, np.zeros_like(placenta))

    k, j, i = np.argwhere(placenta & np.isfinite(result.maps["f"]))[0]
    voxel = voxel_fit(result, (i, j, k))
    assert voxel.curve[0] == pytest.approx(1.0) and voxel.signal[0] == pytest.approx(1.0, rel=1e-5)
    assert voxel.values["D"] == pytest.approx(float(result.maps["D"][k, j, i]))
    assert np.sqrt(
        np.mean((np.interp(voxel.bvalues, voxel.curve_b, voxel.curve) - voxel.signal) ** 2)
    ) == pytest.approx(result.maps["residual"][k, j, i], rel=0.05)
    chart = voxel_chart_node(scene, voxel)
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    with pytest.raises(InputError, match="outside the series"):
        voxel_fit(result, (0, 0, 9))
    with pytest.raises(InputError, match="no fit"):
        voxel_fit(result, (0, 0, 0))

    written = export_maps(nodes, tmp_path / "maps", "nifti")
    assert sorted(path.name for path in written) == sorted(
        [
            "placenta_D_10-3_mm2_s.nii.gz",
            "placenta_Dstar_10-3_mm2_s.nii.gz",
            "placenta_S0_signal.nii.gz",
            "placenta_f_fraction.nii.gz",
            "placenta_residual_fraction_of_S0.nii.gz",
            "placenta_D_SD_10-3_mm2_s.nii.gz",
            "placenta_Dstar_SD_10-3_mm2_s.nii.gz",
            "placenta_f_SD_fraction.nii.gz",
        ]
    )
    array, geometry = read_volume_array(tmp_path / "maps" / "placenta_D_10-3_mm2_s.nii.gz")
    np.testing.assert_allclose(array, arrayFromVolume(nodes["D"]), rtol=1e-6)
    assert geometry.matches(phantom.series.geometry)
    before = sorted(p.stat().st_mtime_ns for p in written)
    with pytest.raises(InputError, match="choose an empty folder"):
        export_maps(nodes, tmp_path / "maps", "nifti")
    assert sorted(p.stat().st_mtime_ns for p in written) == before
    with pytest.raises(InputError, match="unknown format"):
        export_maps(nodes, tmp_path / "other", "png")
    with pytest.raises(InputError, match="estimate them first"):
        export_maps({}, tmp_path / "other")
    assert set(MAP_SPECS) >= set(result.maps)


def test_bayes_adds_sd_maps(scene, sequence, phantom):
    placenta = (phantom.labels == LABELS["placenta"]).astype(np.int16)
    labels = new_volume_node(scene, placenta, phantom.series.geometry, "placenta label", "vtkMRMLLabelMapVolumeNode")
    result = estimate_maps(sequence, EstimateConfig(method="bayes", prior="placenta"), mask_node=labels)
    assert {"f_sd", "D_sd", "Dstar_sd"} <= set(result.maps)
    nodes = map_nodes(scene, result, "bayes")
    assert nodes["D_sd"].GetName() == "bayes D SD [10^-3 mm2/s]"
    assert np.nanmedian(result.maps["D_sd"]) > 0


@pytest.mark.slow
def test_ivim_demo_outputs(tmp_path, run_cli):
    from IVIMEstimatorLib.sample_data import write_placenta_sample

    write_placenta_sample(tmp_path / "ivim", shape=(12, 96, 96))  # registration needs a realistic field of view
    result = run_cli("ivimestimator", "demo", str(tmp_path / "ivim"), str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"scdnn", "mlp", "ivimnet", "nlls", "bayes"}
    for scores in list(metrics["methods"].values()) + [metrics["scdnn_motion_corrected"]]:
        assert 0 < scores["f"] < 0.6 and 0 < scores["D"] < 0.6 and 0 < scores["Dstar"] < 1.5
        assert scores["fitted_fraction"] > 0.9
    assert len(list((tmp_path / "out" / "maps").glob("*.nrrd"))) == 8  # f, D, D*, S0, their SDs, residual
    for name in ("maps.png", "voxel_fit.png"):
        assert (tmp_path / "out" / name).stat().st_size > 5000
    missing = run_cli("ivimestimator", "demo", str(tmp_path / "nothing"), str(tmp_path / "o"))
    assert missing.returncode == 2 and "sample-data" in missing.stderr


def test_maps_from_a_set_of_scalar_volumes_with_typed_bvalues(scene, phantom):
    volumes = [
        new_volume_node(scene, volume, phantom.series.geometry, f"b{b:g}")
        for volume, b in zip(phantom.series.volumes, phantom.series.bvalues)
    ]
    with pytest.raises(InputError, match="no b-values stored"):
        estimate_maps(volumes, EstimateConfig(method="mlp"))
    typed = ", ".join(f"{b:g}" for b in phantom.series.bvalues)
    result = estimate_maps(volumes, EstimateConfig(method="mlp", auto_mask=True), bvalues_text=typed)
    np.testing.assert_array_equal(result.series.bvalues, phantom.series.bvalues)
    assert np.isfinite(result.maps["D"][phantom.labels == LABELS["placenta"]]).all()


def test_estimate_reports_fitting_progress_and_cancels_during_the_fit(scene, phantom, sequence):
    """What the module's Estimate button runs (IVIMEstimatorLogic.estimate -> estimate_maps): the fit reports
    progress per chunk of voxels, and a Cancel clicked while it fits (the widget processes events in the
    progress callback) stops it at the next chunk instead of after every voxel."""
    reports = []
    every_voxel = EstimateConfig(method="nlls", auto_mask=False)
    result = estimate_maps(sequence, every_voxel, progress=lambda f, m: reports.append((f, m)))
    fitting = [(f, m) for f, m in reports if m.startswith("fitted ")]
    assert len(fitting) == 3 and fitting[-1] == (pytest.approx(0.95), "fitted 4,800 of 4,800 voxels (nlls)")
    assert [f for f, _ in reports] == sorted(f for f, _ in reports) and reports[-1] == (1.0, "maps ready")
    assert np.isfinite(result.maps["f"]).all()
    reports.clear()
    with pytest.raises(Cancelled):
        estimate_maps(
            sequence,
            every_voxel,
            progress=lambda f, m: reports.append(m),
            cancel=lambda: any(m.startswith("fitted ") for m in reports),
        )
    assert [m for m in reports if m.startswith("fitted ")] == ["fitted 2,048 of 4,800 voxels (nlls)"]


def test_a_4d_nifti_from_another_tool_is_read_with_its_geometry_scaling_and_bval_file(tmp_path):
    """4D NIfTI is read by the Lib itself (SimpleITK), not by Slicer's sequence storage node, which the released
    Slicers (5.8, 5.10) and slicer-core 5.11 lack: an oblique scanner-style file (int16 with a scale slope,
    written by nibabel) gives nibabel's voxels and RAS affine; 3D and vector files are refused clearly."""
    import nibabel

    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = rotation @ np.diag([1.25, 1.25, 4.0]), (12.0, -7.5, 30.0)
    raw = np.random.default_rng(4).integers(0, 3000, size=(6, 5, 4, 10)).astype(np.int16)  # i, j, k, volume
    image = nibabel.Nifti1Image(raw, affine)
    image.header.set_slope_inter(0.5, 2.0)
    nibabel.save(image, tmp_path / "dwi.nii.gz")
    (tmp_path / "dwi.bval").write_text(" ".join(f"{b:g}" for b in ACQUIRED_BVALUES) + "\n")
    series = read_series_array(tmp_path / "dwi.nii.gz")
    np.testing.assert_allclose(series.volumes, np.transpose(raw, (3, 2, 1, 0)) * 0.5 + 2.0)
    np.testing.assert_allclose(series.geometry.ijk_to_ras_matrix(), affine, atol=1e-5)
    np.testing.assert_array_equal(series.bvalues, ACQUIRED_BVALUES)
    nibabel.save(nibabel.Nifti1Image(raw[..., 0], affine), tmp_path / "b0.nii.gz")
    with pytest.raises(InputError, match="b0.nii.gz as a 4D series: it holds a 3D image"):
        read_series_array(tmp_path / "b0.nii.gz")
    vector = nibabel.Nifti1Image(raw[:, :, :, None, :3].astype(np.float32), affine)
    vector.header.set_intent("vector")
    nibabel.save(vector, tmp_path / "vector.nii")
    with pytest.raises(InputError, match="3-component voxels"):
        read_series_array(tmp_path / "vector.nii")


# -- the voxel inspector's point list ----------------------------------------------------------------------------
def test_the_voxel_inspector_follows_the_list_slicer_places_into_once_its_point_is_placed(scene):
    """The voxel list holds one point: the next placement goes into a new list Slicer makes
    (``vtkMRMLMarkupsDisplayableManager::GetWidgetForPlacement``); the inspector follows it (before, it went
    on reading its full list and stopped after the first voxel) and removes the list it replaced."""
    application, markups = placing_scene(scene)
    selection, interaction = application.GetSelectionNode(), application.GetInteractionNode()
    placed, shown = [], []  # what the module gets: positions to inspect, lists for its place widget
    voxel = VoxelPoint(scene, placed.append, shown.append)
    first = voxel.ensure()
    assert voxel.ensure() is first and shown == [first] and voxel.position() is None
    assert (first.GetName(), first.GetMaximumNumberOfControlPoints(), first.GetHideFromEditors()) == (
        "IVIM voxel",
        1,
        1,
    )
    markups.SetActiveList(first)  # what the place widget does
    interaction.SetCurrentInteractionMode(interaction.Place)
    first.AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0))
    assert placed == [(1.0, 2.0, 3.0)]

    for click in range(2):  # the 2nd and 3rd voxels: each into a new list
        previous = voxel.node
        successor = markups.AddNewMarkupsNode("vtkMRMLMarkupsFiducialNode")
        selection.SetReferenceActivePlaceNodeID(successor.GetID())
        assert voxel.node is successor and shown[-1] is successor
        assert (successor.GetName(), successor.GetMaximumNumberOfControlPoints(), successor.GetHideFromEditors()) == (
            "IVIM voxel",
            1,
            1,
        )
        assert scene.IsNodePresent(previous)  # the inspected point stays shown until the next one is placed
        successor.AddControlPoint(vtk.vtkVector3d(4.0 + click, 5.0, 6.0))
        assert placed[-1] == (4.0 + click, 5.0, 6.0) and not scene.IsNodePresent(previous)
    assert len(placed) == 3 and len(shown) == 3
    assert scene.GetNodesByClass("vtkMRMLMarkupsFiducialNode").GetNumberOfItems() == 1

    voxel.node.SetNthControlPointPositionWorld(0, 7.0, 8.0, 9.0)  # the user drags the point
    voxel.node.InvokeEvent(voxel.node.PointEndInteractionEvent)
    assert placed[-1] == (7.0, 8.0, 9.0)
    interaction.SetCurrentInteractionMode(interaction.ViewTransform)
    other = markups.AddNewMarkupsNode("vtkMRMLMarkupsFiducialNode", "landmarks")  # the user's own list ...
    other.AddControlPoint(vtk.vtkVector3d(0.0, 0.0, 0.0))
    interaction.SetCurrentInteractionMode(interaction.Place)
    markups.SetActiveList(voxel.node)
    markups.SetActiveList(other)  # ... chosen again to place into: not followed
    assert voxel.node is not other and len(placed) == 4
    inspected = voxel.node
    voxel.close()  # the module is left: a list made elsewhere (e.g. by Slicer's toolbar) is not taken
    markups.SetActiveList(inspected)
    successor = markups.AddNewMarkupsNode("vtkMRMLMarkupsFiducialNode")
    selection.SetReferenceActivePlaceNodeID(successor.GetID())
    successor.AddControlPoint(vtk.vtkVector3d(1.0, 1.0, 1.0))
    inspected.SetNthControlPointPositionWorld(0, 2.0, 2.0, 2.0)
    inspected.InvokeEvent(inspected.PointEndInteractionEvent)
    assert len(placed) == 4 and len(shown) == 3 and successor.GetName() != "IVIM voxel"
    assert voxel.ensure() is inspected and shown[-1] is inspected  # entered again: the same list, followed again
    inspected.InvokeEvent(inspected.PointEndInteractionEvent)
    assert placed[-1] == (2.0, 2.0, 2.0)


# -- the module widget's use of the shared GUI helpers (the widget needs Slicer's qt: read from its source) --------
def module_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse((Path(__file__).resolve().parents[1] / "IVIMEstimator" / "IVIMEstimator.py").read_text())
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def calls(function: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == name
    ]


def test_each_button_cancels_only_its_own_job_and_is_disabled_while_another_runs():
    """A click on one job button (queued while another job runs) must not cancel that job
    (``ButtonJobs.request_cancel(button)``), and no job button is enabled while another's job runs
    (``ButtonJobs.enabled``)."""
    functions = module_functions()
    buttons = {}
    for name, function in functions.items():
        for call in calls(function, "request_cancel"):
            runs = calls(function, "_run")
            assert runs, f"{name} asks to cancel but starts no job"
            assert [ast.dump(a) for a in call.args] == [ast.dump(runs[0].args[0])], (
                f"{name}: request_cancel must name the button whose job it would cancel"
            )
            buttons[ast.dump(runs[0].args[0])] = name
    assert len(buttons) == 2  # Estimate and Retrain
    states = {
        ast.dump(node.targets[0].value): node.value
        for node in ast.walk(functions["_updateState"])
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "attr", None) == "enabled"
    }
    for button in buttons:
        value = states[button]
        assert isinstance(value, ast.Call) and value.func.attr == "enabled" and ast.dump(value.args[0]) == button, (
            "a job button's state must come from ButtonJobs.enabled"
        )


def test_the_module_binds_its_gui_through_parameter_gui_and_its_place_widget_shows_the_followed_list():
    """``connectGui``/``disconnectGui`` by hand pile up observers and lose the tag on Slicer 5.8
    (``FastMRICommon.gui_binding``); the voxel inspector's list is the VoxelPoint's, shown by the place widget."""
    functions = module_functions()
    for name, function in functions.items():
        assert not calls(function, "connectGui") and not calls(function, "disconnectGui"), name
    assert calls(functions["setup"], "ParameterGui") and calls(functions["setParameterNode"], "bind")
    (voxel,) = calls(functions["setup"], "VoxelPoint")
    assert "voxelPlaceWidget.setCurrentNode" in ast.unparse(voxel.args[2])
    for name, function in functions.items():
        assert not calls(function, "SetMaximumNumberOfControlPoints"), f"{name}: the voxel list is VoxelPoint's"


def test_reload_forgets_the_lib_packages_before_slicer_re_runs_the_module_file():
    """Slicer's Reload (``ScriptedLoadableModuleWidget.onReload`` at v5.10.0) executes only the module file again:
    the widget's ``onReload`` first forgets IVIMEstimatorLib, then calls Slicer's. FastMRICommon stays: it is
    shared with FastMRRecon, whose imported classes (InputError) must stay the ones FastMRICommon raises."""
    body = module_functions()["onReload"].body
    statements = [
        ast.unparse(node) for node in body if not isinstance(node, ast.Expr) or not isinstance(node.value, ast.Constant)
    ]
    assert statements == ["forget_packages(('IVIMEstimatorLib',))", "ScriptedLoadableModuleWidget.onReload(self)"]


# -- one home per setting: the parameter node is made from the Lib's settings fields ---------------------------
class Range:
    """Stand-in for parameterNodeWrapper's WithinRange (the module file needs Slicer's GUI to import)."""

    def __init__(self, minimum, maximum) -> None:
        self.minimum, self.maximum = minimum, maximum


class Choices:
    """Stand-in for parameterNodeWrapper's Choice."""

    def __init__(self, choices) -> None:
        self.choices = choices


def parameter_node_class() -> tuple[dict, dict]:
    """(annotations, defaults) of the module's parameter node class as Slicer's ``@parameterNodeWrapper`` reads
    them: its written fields plus those its ``@settings_parameters(...)`` decorators add, the decorators being
    read from the module file and run on the settings classes it imports, with stand-in validators."""
    import importlib

    tree = ast.parse(MODULE_FILE.read_text())
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "IVIMEstimatorParameterNode"]
    imported = {
        alias.asname or alias.name: statement.module
        for statement in tree.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }
    written = {item.target.id: item for item in node.body if isinstance(item, ast.AnnAssign)}
    cls = type("Node", (), {"__annotations__": {name: object for name in written}})
    decorators = [d for d in node.decorator_list if isinstance(d, ast.Call) and d.func.id == "settings_parameters"]
    for decorator in reversed(decorators):  # applied bottom-up
        names = {n.id for n in ast.walk(decorator) if isinstance(n, ast.Name)} - {"WithinRange", "Choice"}
        namespace = {name: getattr(importlib.import_module(imported[name]), name) for name in names}
        cls = eval(
            compile(ast.Expression(decorator), "decorator", "eval"),
            namespace | {"WithinRange": Range, "Choice": Choices},
        )(cls)
    generated = {name: kind for name, kind in cls.__annotations__.items() if name not in written}
    return generated, {name: getattr(cls, name) for name in generated}


MODULE_FILE = Path(__file__).resolve().parents[1] / "IVIMEstimator" / "IVIMEstimator.py"


def test_the_parameter_node_and_the_command_line_take_each_setting_from_one_field():
    """Every setting of the module's panel is a field of a Lib settings class: the parameter node's default,
    range or choices are that field's, and so are ``ivimestimator fit`` / ``train``'s option defaults; the module
    file writes none of them (it declares only its nodes, typed b-values and model path)."""
    import typing

    from FastMRICommon.settings import settings_fields
    from IVIMEstimatorLib.cli import build_parser
    from IVIMEstimatorLib.map_logic import ExportSettings
    from IVIMEstimatorLib.training.config import TrainingConfig

    annotations, defaults = parameter_node_class()
    parser = build_parser()
    fit = vars(parser.parse_args(["fit", "dwi.nii.gz", "maps"]))
    train = vars(parser.parse_args(["train", "--bvals", "0,10,20", "--out", "m.pt"]))
    train["snr_low"], train["snr_high"] = train["snr_range"]  # one option, --snr-range, for the two settings
    fields = {field.parameter_name: (field, train) for field in settings_fields(TrainingConfig)}
    fields |= {
        field.parameter_name: (field, fit) for cls in (EstimateConfig, ExportSettings) for field in settings_fields(cls)
    }  # the panel's method and prior are EstimateConfig's
    assert set(annotations) == {
        "method",
        "bvalueSet",
        "motionCorrection",
        "autoMask",
        "prior",
        "device",
        "exportFormat",
        "trainingSnrLow",
        "trainingSnrHigh",
    }
    for name, annotation in annotations.items():
        field, cli = fields[name]
        assert defaults[name] == field.default == cli[field.name], name  # the GUI's and the CLI's default
        kind, *validators = typing.get_args(annotation) or (annotation,)
        assert kind is field.kind, name
        if field.setting.choices is not None:
            assert [v.choices for v in validators] == [list(field.setting.choices)], name
        elif field.setting.minimum is not None:
            assert [(v.minimum, v.maximum) for v in validators] == [(field.setting.minimum, field.setting.maximum)]
    assert (defaults["prior"], defaults["autoMask"], defaults["trainingSnrLow"], defaults["trainingSnrHigh"]) == (
        "placenta",
        True,
        8.0,
        150.0,
    )
    bounds = annotations["trainingSnrHigh"].__metadata__[0]
    assert (bounds.minimum, bounds.maximum) == (2.0, 1000.0)
    assert set(typing.get_args(annotations["exportFormat"])[1].choices) == set(EXPORT_FORMATS)


def test_out_of_range_settings_are_refused_naming_the_setting():
    """The checks behind the panel's and the command line's ranges: an InputError naming the setting."""
    from IVIMEstimatorLib.map_logic import ExportSettings
    from IVIMEstimatorLib.motion import MotionConfig
    from IVIMEstimatorLib.training.config import TrainingConfig

    for make, message in (
        (lambda: EstimateConfig(prior="lung"), "prior must be one of placenta, "),
        (lambda: EstimateConfig(bvalue_set="some"), "bvalue set must be one of all, accelerated"),
        (lambda: EstimateConfig(device="tpu"), "device must be one of auto, cpu, cuda"),
        (lambda: ExportSettings("png"), "file format must be one of nrrd, nifti; got 'png'"),
        (lambda: MotionConfig(rounds=(3, 2)), r"rounds must be \(min, max\) with 1 <= min <= max"),
        (lambda: MotionConfig(rounds=(1.5, 2)), "rounds must be"),
        (lambda: TrainingConfig(snr_high=2500.0).validate(), "snr high must be between 2 and 1000; got 2500"),
        (lambda: TrainingConfig(snr_low=50.0, snr_high=20.0).validate(), r"lowest training SNR \(50\) exceeds"),
        (lambda: TrainingConfig(method="nlls").validate(), "method must be one of scdnn, mlp, ivimnet; got 'nlls'"),
    ):
        with pytest.raises(InputError, match=message):
            make()
