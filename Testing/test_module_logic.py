"""What the Slicer modules' logic calls, on a real MRML scene: new output nodes, untouched inputs."""

from __future__ import annotations

import numpy as np
import pytest
from slicer.util import arrayFromVolume, updateVolumeFromArray

from FastMRICommon.errors import InputError
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.mrml_nodes import geometry_of, new_volume_node
from FastMRReconLib.kspace.simulate import AcquisitionConfig
from FastMRReconLib.volume_logic import simulate_volume_node
from IVIMEstimatorLib.diffusion_series import DiffusionSeries, new_sequence_node
from IVIMEstimatorLib.phantoms.phantom import placenta_phantom
from IVIMEstimatorLib.series_logic import SummaryCache, load_series, require_bvalues, summarize_series

GEOMETRY = VolumeGeometry((0.8, 0.8, 3.0), (10.0, -20.0, 5.0), ((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)))


def head_like(shape=(3, 48, 40)) -> np.ndarray:
    y, x = np.mgrid[-1 : 1 : shape[1] * 1j, -1 : 1 : shape[2] * 1j]
    return np.repeat((((x / 0.8) ** 2 + (y / 0.9) ** 2) < 1)[None] * (1 + 0.3 * x), shape[0], axis=0) * 500.0


def test_simulate_volume_node_makes_a_new_node_and_leaves_the_input(scene):
    image = head_like()
    node = new_volume_node(scene, image, GEOMETRY, "T2w")
    mtime, count = node.GetMTime(), scene.GetNumberOfNodes()
    output = simulate_volume_node(node, AcquisitionConfig(acceleration=2.0, coils=4, seed=3))
    assert output.GetName() == "T2w R2 AV1" and output.GetScene() is scene and scene.GetNumberOfNodes() > count
    assert node.GetMTime() == mtime
    np.testing.assert_array_equal(arrayFromVolume(node), image)
    assert geometry_of(output).matches(GEOMETRY)
    result = arrayFromVolume(output)
    assert result.shape == image.shape and 0.7 < result[image > 0].mean() / 500.0 < 1.3  # scale kept
    display = output.GetDisplayNode()
    assert display is not None and not display.GetAutoWindowLevel() and display.GetWindow() > 0


def test_simulate_volume_node_with_part_of_k_space_is_named_and_blurred(scene):
    image = head_like((2, 64, 64))
    node = new_volume_node(scene, image, GEOMETRY, "T1w")
    config = AcquisitionConfig(acceleration=1.0, coils=4, snr=1000.0, resolution=(0.5, 0.25), seed=1)
    output = simulate_volume_node(node, config)
    assert output.GetName() == "T1w R1 AV1 k0.5x0.25"
    full = arrayFromVolume(simulate_volume_node(node, AcquisitionConfig(acceleration=1.0, coils=4, snr=1000.0, seed=1)))
    truncated = arrayFromVolume(output)
    # the head's edge spreads over more pixels, most of all across the columns (a quarter of k-space acquired)
    steepest = [
        np.abs(np.diff(truncated, axis=axis)).max() / np.abs(np.diff(full, axis=axis)).max() for axis in (1, 2)
    ]  # 0.47 and 0.28 when written
    assert steepest[1] < steepest[0] < 0.7 and steepest[1] < 0.4
    np.testing.assert_array_equal(arrayFromVolume(node), image)


def test_simulate_refuses_label_maps_and_vectors(scene):
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "seg")
    from slicer.util import updateVolumeFromArray

    updateVolumeFromArray(labels, np.ones((2, 8, 8), np.int16))
    with pytest.raises(InputError, match="label map"):
        simulate_volume_node(labels, AcquisitionConfig())
    vector = new_volume_node(scene, np.ones((2, 8, 8, 3), np.float32), GEOMETRY, "rgb", "vtkMRMLVectorVolumeNode")
    with pytest.raises(InputError, match="3 components per voxel; select a scalar image"):
        simulate_volume_node(vector, AcquisitionConfig())
    with pytest.raises(InputError, match="select a scalar volume"):
        simulate_volume_node(None, AcquisitionConfig())


def test_series_summary_reads_bvalues_from_the_data_or_the_user(scene):
    phantom = placenta_phantom(shape=(2, 24, 24))
    sequence = new_sequence_node(scene, phantom.series, "placenta")
    summary = summarize_series(sequence)
    assert summary.volumes == 10 and summary.bvalues_source == "data" and summary.shape == (2, 24, 24)
    assert "0, 10, 20, 50, 80, 100, 150, 200, 300, 500 s/mm²" in summary.text()
    typed = summarize_series(sequence, "0,10,20,50,80,100,150,200,300,600")
    assert typed.bvalues_source == "user" and typed.bvalues[-1] == 600.0
    unlabelled = new_sequence_node(scene, DiffusionSeries(phantom.series.volumes, None, phantom.series.geometry), "raw")
    assert "type them" in summarize_series(unlabelled).text()
    with pytest.raises(InputError, match="type them"):
        require_bvalues(load_series(unlabelled))
    with pytest.raises(InputError, match="3 b-values given for 10 volumes"):
        summarize_series(sequence, "0, 20, 50")


def test_series_summary_cache_reads_the_series_again_only_when_it_changed(scene):
    phantom = placenta_phantom(shape=(2, 24, 24))
    sequence = new_sequence_node(scene, phantom.series, "placenta")
    cache = SummaryCache()
    first = cache.get(sequence)
    assert cache.get(sequence) is first  # unchanged: not read again
    typed = cache.get(sequence, "0,10,20,50,80,100,150,200,300,600")
    assert typed is not first and typed.bvalues[-1] == 600.0
    assert cache.get(sequence) == first  # back to the stored b-values
    volume = sequence.GetNthDataNode(0)
    updateVolumeFromArray(volume, np.zeros((2, 24, 24), np.float32))  # an item's voxels change
    changed = cache.get(sequence)
    assert changed is not first and changed == first
    updateVolumeFromArray(volume, np.zeros((2, 30, 24), np.float32))  # an item changes its grid
    with pytest.raises(InputError, match="not on the same grid"):
        cache.get(sequence)
    with pytest.raises(InputError):  # a bad typed list is an error every time, never a cached summary
        cache.get(sequence, "0, 20, 50")
    with pytest.raises(InputError):
        cache.get(sequence, "0, 20, 50")
    volumes = [
        new_volume_node(scene, phantom.series.volumes[index], phantom.series.geometry, f"b{index}")
        for index in range(3)
    ]
    assert cache.get(volumes, "0, 50, 200").volumes == 3
