"""Geometry, MRML nodes and files on a real vtkMRMLScene (FastMRICommon.geometry, mrml_nodes, volume_files;
IVIMEstimatorLib.diffusion_series): oblique grids, diffusion series, files, and untouched inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import vtk
from slicer.util import arrayFromVolume, updateVolumeFromArray

from FastMRICommon.errors import InputError
from FastMRICommon.geometry import (
    VolumeGeometry,
    array_to_sitk,
    crop,
    ijk_to_ras,
    orient_axial,
    physical_points_lps,
    ras_to_ijk,
)
from FastMRICommon.mrml_nodes import new_volume_node, volume_to_array
from FastMRICommon.volume_files import read_volume, read_volume_array, write_volume, write_volume_array
from IVIMEstimatorLib.diffusion_series import (
    DiffusionSeries,
    new_sequence_node,
    parse_bvalues,
    read_series,
    read_series_array,
    series_from_nodes,
    write_series_array,
)


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    x, y, z = axis
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array(
        [
            [c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
            [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
            [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)],
        ]
    )


OBLIQUE = VolumeGeometry(
    spacing=(0.9, 1.1, 3.5), origin=(-12.5, 30.25, 7.0), directions=tuple(map(tuple, rotation([1, 2, 3], 23.0)))
)
BVALUES = [0, 10, 20, 50, 80, 100, 150, 200, 300, 500]


def ras_of(geometry: VolumeGeometry, kji) -> np.ndarray:
    k, j, i = kji
    return (geometry.ijk_to_ras_matrix() @ np.array([i, j, k, 1.0]))[:3]


def test_ijk_and_ras_conversions_agree_with_the_node_matrices(scene):
    """ijk_to_ras / ras_to_ijk against vtk's own IJK-to-RAS and RAS-to-IJK matrices of a node on an oblique grid,
    for one point and for many, and as inverses of each other."""
    node = new_volume_node(scene, np.zeros((4, 5, 6), np.float32), OBLIQUE, "oblique")
    ijk = np.random.default_rng(3).uniform(-2, 8, (7, 3))
    to_ras, to_ijk = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(to_ras)
    node.GetRASToIJKMatrix(to_ijk)
    expected = np.array([to_ras.MultiplyPoint([*point, 1.0])[:3] for point in ijk])
    np.testing.assert_allclose(ijk_to_ras(OBLIQUE, ijk), expected, atol=1e-9)
    np.testing.assert_allclose(ijk_to_ras(OBLIQUE, ijk[0]), expected[0], atol=1e-9)  # one point: shape (3,)
    assert ijk_to_ras(OBLIQUE, ijk[0]).shape == (3,)
    back = np.array([to_ijk.MultiplyPoint([*point, 1.0])[:3] for point in expected])
    np.testing.assert_allclose(ras_to_ijk(OBLIQUE, expected), back, atol=1e-9)
    np.testing.assert_allclose(ras_to_ijk(OBLIQUE, ijk_to_ras(OBLIQUE, ijk)), ijk, atol=1e-9)
    # physical_points_lps takes (k, j, i) rows and gives LPS
    np.testing.assert_allclose(physical_points_lps(OBLIQUE, ijk[:, ::-1]), expected * [-1, -1, 1], atol=1e-9)


def test_numpy_to_node_and_back_keeps_oblique_geometry(scene):
    array = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    node = new_volume_node(scene, array, OBLIQUE, "oblique")
    back, geometry = volume_to_array(node)
    np.testing.assert_array_equal(back, array)
    assert geometry.matches(OBLIQUE, 1e-9)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    np.testing.assert_allclose(
        [[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], OBLIQUE.ijk_to_ras_matrix(), atol=1e-12
    )


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".nii", ".mha"])
def test_file_round_trip_keeps_oblique_geometry_and_values(scene, tmp_path, suffix):
    array = np.random.default_rng(1).random((4, 5, 6)).astype(np.float32)
    node = new_volume_node(scene, array, OBLIQUE, "oblique")
    path = write_volume(node, tmp_path / f"oblique{suffix}")
    loaded = read_volume(scene, path)
    assert loaded.GetID() != node.GetID() and loaded.GetName() == "oblique"
    back, geometry = volume_to_array(loaded)
    np.testing.assert_array_equal(back, array)
    assert geometry.matches(OBLIQUE, 1e-4)


def test_left_handed_geometry_keeps_every_voxel_in_place(tmp_path):
    """Readers may flip a left-handed grid to right-handed: voxels must still sit at the same RAS position."""
    flipped = VolumeGeometry((1.0, 2.0, 3.0), (5.0, 6.0, 7.0), ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)))
    array = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    for suffix in (".nrrd", ".nii.gz"):
        back, geometry = read_volume_array(write_volume_array(array, flipped, tmp_path / f"lh{suffix}"))
        for value in (0, 17, 37, 59):
            original = np.argwhere(array == value)[0]
            moved = np.argwhere(back == value)[0]
            np.testing.assert_allclose(ras_of(geometry, moved), ras_of(flipped, original), atol=1e-4)


def test_physical_points_agree_with_simpleitk_on_an_oblique_grid():
    image = array_to_sitk(np.zeros((4, 5, 6), np.float32), OBLIQUE)
    index = np.argwhere(np.ones((4, 5, 6), bool))
    expected = [image.TransformContinuousIndexToPhysicalPoint([float(v) for v in kji[::-1]]) for kji in index]
    np.testing.assert_allclose(physical_points_lps(OBLIQUE, index), expected, atol=1e-9)


def test_orient_axial_and_crop_keep_voxels_in_place():
    geometry = VolumeGeometry((1.0, 1.0, 1.0), (128.0, -128.0, 128.0), ((-1, 0, 0), (0, 0, -1), (0, 1, 0)))  # LIA
    array = np.random.default_rng(2).random((6, 7, 8)).astype(np.float32)
    axial, axial_geometry = orient_axial(array, geometry)
    np.testing.assert_allclose(np.asarray(axial_geometry.directions) @ [0, 0, 1], [0, 0, 1])  # k runs to superior
    value = array[2, 3, 4]
    np.testing.assert_allclose(ras_of(axial_geometry, np.argwhere(axial == value)[0]), ras_of(geometry, (2, 3, 4)))
    part, part_geometry = crop(axial, axial_geometry, slice(1, 4), slice(2, 5))
    assert part.shape == (3, 3, axial.shape[2])
    np.testing.assert_allclose(ras_of(part_geometry, (0, 0, 0)), ras_of(axial_geometry, (1, 2, 0)))


def make_series(n=len(BVALUES), shape=(3, 4, 5), bvalues=BVALUES) -> DiffusionSeries:  # noqa: B008
    volumes = np.stack([np.full(shape, 100.0 * np.exp(-b * 1e-3), np.float32) for b in bvalues[:n]])
    volumes += np.random.default_rng(3).random(volumes.shape).astype(np.float32)
    return DiffusionSeries(volumes, np.array(bvalues[:n], float), OBLIQUE)


def test_sequence_node_carries_bvalues(scene):
    series = make_series()
    sequence = new_sequence_node(scene, series, "dwi")
    assert sequence.GetIndexName() == "b" and sequence.GetNumberOfDataNodes() == 10
    back = series_from_nodes(sequence)
    np.testing.assert_array_equal(back.bvalues, BVALUES)
    np.testing.assert_array_equal(back.volumes, series.volumes)
    assert back.geometry.matches(OBLIQUE, 1e-9)
    assert back.signals.shape == (3, 4, 5, 10)


def test_sequence_with_a_time_index_has_no_bvalues_unless_given(scene):
    series = DiffusionSeries(make_series().volumes, None, OBLIQUE)
    sequence = new_sequence_node(scene, series, "dwi")
    assert series_from_nodes(sequence).bvalues is None
    np.testing.assert_array_equal(series_from_nodes(sequence, BVALUES).bvalues, BVALUES)


def test_diffusion_weighted_volume_node_bvalues_are_read(scene):
    series = make_series()
    node = scene.AddNewNodeByClass("vtkMRMLDiffusionWeightedVolumeNode", "dwi")
    updateVolumeFromArray(node, np.ascontiguousarray(np.moveaxis(series.volumes, 0, -1)))
    node.SetNumberOfGradients(10)
    values = vtk.vtkDoubleArray()
    for b in BVALUES:
        values.InsertNextValue(b)
    node.SetBValues(values)
    back = series_from_nodes(node)
    np.testing.assert_array_equal(back.bvalues, BVALUES)
    np.testing.assert_allclose(back.volumes, series.volumes)


def test_multivolume_frame_labels_are_bvalues(scene):
    series = make_series(n=6, bvalues=[0, 20, 50, 150, 300, 500])
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "multivolume")
    updateVolumeFromArray(node, np.ascontiguousarray(np.moveaxis(series.volumes, 0, -1)))
    node.SetAttribute("MultiVolume.FrameLabels", "0,20,50,150,300,500")
    node.SetAttribute("MultiVolume.FrameIdentifyingDICOMTagName", "DiffusionBValue")
    np.testing.assert_array_equal(series_from_nodes(node).bvalues, [0, 20, 50, 150, 300, 500])
    node.SetAttribute("MultiVolume.FrameIdentifyingDICOMTagName", "TriggerTime")
    assert series_from_nodes(node).bvalues is None


def test_list_of_volumes_and_mismatched_grid(scene):
    series = make_series(n=3)
    nodes = [new_volume_node(scene, volume, OBLIQUE, f"b{b:g}") for volume, b in zip(series.volumes, BVALUES)]
    back = series_from_nodes(nodes, [0, 10, 20])
    np.testing.assert_array_equal(back.volumes, series.volumes)
    shifted = VolumeGeometry(OBLIQUE.spacing, (0.0, 0.0, 0.0), OBLIQUE.directions)
    nodes.append(new_volume_node(scene, series.volumes[0], shifted, "moved"))
    with pytest.raises(InputError, match="not on the same grid"):
        series_from_nodes(nodes)
    with pytest.raises(InputError, match="3 b-values given for 2 volumes"):
        series_from_nodes(nodes[:2], [0, 10, 20])


def test_wrong_node_types_are_refused(scene):
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", "surface")
    with pytest.raises(InputError, match="vtkMRMLModelNode"):
        series_from_nodes(model)
    with pytest.raises(InputError, match="has no image data"):
        volume_to_array(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))
    with pytest.raises(InputError, match="empty"):
        series_from_nodes([])


@pytest.mark.parametrize("name", ["dwi.seq.nrrd", "dwi.nrrd", "dwi.nii.gz"])
def test_4d_file_round_trip_keeps_bvalues_and_geometry(scene, tmp_path, name):
    series = make_series()
    path = write_series_array(series, tmp_path / name)
    if name.endswith(".nii.gz"):
        assert (tmp_path / "dwi.bval").read_text().split() == [str(b) for b in BVALUES]
    sequence = read_series(scene, path)
    assert sequence.GetScene() is scene and sequence.GetIndexName() == "b"
    back = series_from_nodes(sequence)
    np.testing.assert_array_equal(back.bvalues, BVALUES)
    np.testing.assert_allclose(back.volumes, series.volumes)
    assert back.geometry.matches(OBLIQUE, 1e-4)


def test_folder_of_volumes_is_a_series(tmp_path):
    series = make_series(n=4)
    for index, volume in enumerate(series.volumes):
        write_volume_array(volume, OBLIQUE, tmp_path / f"vol{index:02d}.nii.gz")
    (tmp_path / "protocol.bval").write_text("0 10 20 50\n")
    back = read_series_array(tmp_path)
    np.testing.assert_array_equal(back.bvalues, [0, 10, 20, 50])
    np.testing.assert_allclose(back.volumes, series.volumes)


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no such image file"):
        read_volume_array(tmp_path / "missing.nrrd")
    junk = tmp_path / "junk.nrrd"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="cannot read"):
        read_volume_array(junk)
    with pytest.raises(InputError, match="use one of"):
        write_volume_array(np.zeros((2, 2, 2)), OBLIQUE, tmp_path / "out.png")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="holds no volume files"):
        read_series_array(tmp_path / "nothing")


def test_inputs_are_never_modified(scene, tmp_path):
    series = make_series()
    sequence = new_sequence_node(scene, series, "dwi")
    before = [arrayFromVolume(sequence.GetNthDataNode(i)).copy() for i in range(10)]
    mtime = sequence.GetMTime()
    back = series_from_nodes(sequence)
    back.volumes[:] = 0  # the caller owns a copy
    node = new_volume_node(scene, series.volumes[0], OBLIQUE, "single")
    volume_mtime = node.GetMTime()
    write_volume(node, tmp_path / "single.nrrd")
    assert sequence.GetMTime() == mtime and node.GetMTime() == volume_mtime
    for index, array in enumerate(before):
        np.testing.assert_array_equal(arrayFromVolume(sequence.GetNthDataNode(index)), array)
    assert node.GetStorageNode() is None


@pytest.mark.parametrize(
    "text, expected", [("0,20,50", [0, 20, 50]), ("0 20\n50", [0, 20, 50]), (" 0, 1e3 ", [0, 1000])]
)
def test_parse_bvalues(text, expected):
    np.testing.assert_array_equal(parse_bvalues(text), expected)


@pytest.mark.parametrize(
    "text, message", [("0, x", "not a list of numbers"), ("", "no b-values"), ("0,-5", ">= 0"), ("0,nan", "finite")]
)
def test_parse_bvalues_refuses_bad_text(text, message):
    with pytest.raises(InputError, match=message):
        parse_bvalues(text)
