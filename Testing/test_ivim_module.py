"""The IVIMEstimator module's logic on a real MRML scene: maps from the series nodes Slicer holds, masks
(label map, segmentation, automatic), b-value subsets, map nodes with units, statistics table, voxel
inspector, export, and the demo."""

from __future__ import annotations

import json

import numpy as np
import pytest
from slicer.util import arrayFromVolume

from FastMRICommon.errors import InputError
from FastMRICommon.mrml_bridge import (DiffusionSeries, VolumeGeometry, geometry_of, new_sequence_node, new_volume_node,
                                       read_volume_array)
from IVIMEstimatorLib.map_logic import (MAP_SPECS, STAT_COLUMNS, EstimateConfig, automatic_mask, estimate_maps,
                                        export_maps, fit_residual, map_nodes, map_statistics, select_bvalues,
                                        statistics_table_node, voxel_chart_node, voxel_fit)
from IVIMEstimatorLib.phantom import LABELS, placenta_phantom
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
    assert set(result.maps) == {"f", "D", "Dstar", "S0", "residual"}
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
        return {scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes())
                if not scene.GetNthNode(n).IsA("vtkMRMLSubjectHierarchyNode")}

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
    with pytest.raises(InputError, match="unknown method"):
        estimate_maps(sequence, EstimateConfig(method="magic"))
    with pytest.raises(InputError):
        estimate_maps(sequence, EstimateConfig(method="mlp"), bvalues_text="0, 10, 20")  # 3 values, 10 volumes


def test_fit_residual_is_zero_for_the_true_maps():
    truth = placenta_phantom(shape=(2, 24, 24), snr=1e9, seed=1)
    maps = {"f": truth.f, "D": truth.D, "Dstar": truth.Dstar, "S0": truth.S0}
    residual = fit_residual(truth.series, maps)
    tissue = truth.labels > 0
    assert np.nanmax(residual[tissue]) < 1e-6


def test_map_nodes_statistics_voxel_and_export(scene, phantom, sequence, tmp_path):
    result = estimate_maps(sequence, EstimateConfig(method="mlp", auto_mask=True))
    nodes = map_nodes(scene, result, "placenta")
    assert nodes["D"].GetName() == "placenta D [10^-3 mm2/s]" and nodes["Dstar"].GetName() == "placenta D* [10^-3 mm2/s]"
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
    assert np.sqrt(np.mean((np.interp(voxel.bvalues, voxel.curve_b, voxel.curve) - voxel.signal) ** 2)) == \
        pytest.approx(result.maps["residual"][k, j, i], rel=0.05)
    chart = voxel_chart_node(scene, voxel)
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    with pytest.raises(InputError, match="outside the series"):
        voxel_fit(result, (0, 0, 9))
    with pytest.raises(InputError, match="no fit"):
        voxel_fit(result, (0, 0, 0))

    written = export_maps(nodes, tmp_path / "maps", "nifti")
    assert sorted(path.name for path in written) == sorted(
        ["placenta_D_10-3_mm2_s.nii.gz", "placenta_Dstar_10-3_mm2_s.nii.gz", "placenta_S0_signal.nii.gz",
         "placenta_f_fraction.nii.gz", "placenta_residual_fraction_of_S0.nii.gz"])
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
    assert len(list((tmp_path / "out" / "maps").glob("*.nrrd"))) == 5
    for name in ("maps.png", "voxel_fit.png"):
        assert (tmp_path / "out" / name).stat().st_size > 5000
    missing = run_cli("ivimestimator", "demo", str(tmp_path / "nothing"), str(tmp_path / "o"))
    assert missing.returncode == 2 and "sample-data" in missing.stderr


def test_maps_from_a_set_of_scalar_volumes_with_typed_bvalues(scene, phantom):
    volumes = [new_volume_node(scene, volume, phantom.series.geometry, f"b{b:g}")
               for volume, b in zip(phantom.series.volumes, phantom.series.bvalues)]
    with pytest.raises(InputError, match="no b-values stored"):
        estimate_maps(volumes, EstimateConfig(method="mlp"))
    typed = ", ".join(f"{b:g}" for b in phantom.series.bvalues)
    result = estimate_maps(volumes, EstimateConfig(method="mlp", auto_mask=True), bvalues_text=typed)
    np.testing.assert_array_equal(result.series.bvalues, phantom.series.bvalues)
    assert np.isfinite(result.maps["D"][phantom.labels == LABELS["placenta"]]).all()
