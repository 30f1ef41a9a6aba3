"""IVIM inputs as Slicer holds them after DICOM import, on a real MRML scene: MultiVolumeImporter's
multi-volumes and volume sequences (b-values from ``MultiVolume.FrameLabels``), and NIfTI files that are
truncated or hold NaN / Inf."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import vtk
from vtk.util.numpy_support import numpy_to_vtk

from FastMRICommon.errors import InputError
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.mrml_nodes import geometry_of
from FastMRICommon.volume_files import read_volume_array, write_volume_array
from IVIMEstimatorLib.diffusion_series import (
    DiffusionSeries,
    new_sequence_node,
    read_series_array,
    series_from_nodes,
    write_series_array,
)
from IVIMEstimatorLib.fits.estimate import fit
from IVIMEstimatorLib.map_logic import EstimateConfig, estimate_maps
from IVIMEstimatorLib.phantoms.phantom import LABELS, placenta_phantom
from IVIMEstimatorLib.series_logic import summarize_series


@pytest.fixture(scope="module")
def phantom():
    return placenta_phantom(shape=(2, 24, 24), snr=60.0, seed=5)


def frame_labels(bvalues) -> str:
    """``MultiVolume.FrameLabels`` as MultiVolumeImporter writes it: str(float) of each frame's tag value."""
    return ",".join(str(float(b)) for b in bvalues)


def dicom_attributes(node, bvalues, tag: str = "Siemens.B-value", units: str = "sec/mm2") -> None:
    """The attributes MultiVolumeImporterPlugin.py sets on a multi-volume parsed by a b-value tag."""
    node.SetAttribute("MultiVolume.FrameLabels", frame_labels(bvalues))
    node.SetAttribute("MultiVolume.NumberOfFrames", str(len(bvalues)))
    node.SetAttribute("MultiVolume.FrameIdentifyingDICOMTagName", tag)
    node.SetAttribute("MultiVolume.FrameIdentifyingDICOMTagUnits", units)


def multivolume_node(scene, phantom, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A DICOM multi-volume: one image with a component per frame and MultiVolumeImporter's attributes. slicer-core
    has no vtkMRMLMultiVolumeNode (MultiVolumeExplorer's scalar-volume subclass): a scalar volume node with the
    same image and attributes stands in for it."""
    volumes = phantom.series.volumes  # [frame, k, j, i]
    image = vtk.vtkImageData()
    image.SetDimensions(volumes.shape[3], volumes.shape[2], volumes.shape[1])
    components = np.ascontiguousarray(np.moveaxis(volumes, 0, -1).reshape(-1, volumes.shape[0]))
    scalars = numpy_to_vtk(components, deep=True)
    image.GetPointData().SetScalars(scalars)
    node = scene.AddNewNodeByClass(class_name, "DWI multivolume")
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(_matrix(phantom.series.geometry.ijk_to_ras_matrix()))
    dicom_attributes(node, phantom.series.bvalues)
    return node


def _matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, array[row, column])
    return matrix


def test_a_dicom_multivolume_is_read_with_its_bvalues(scene, phantom):
    node = multivolume_node(scene, phantom)
    series = series_from_nodes(node)
    np.testing.assert_array_equal(series.bvalues, phantom.series.bvalues)
    np.testing.assert_array_equal(series.volumes, phantom.series.volumes)
    assert series.geometry.matches(geometry_of(node))
    summary = summarize_series(node)
    assert (summary.volumes, summary.bvalues_source) == (10, "data")
    result = estimate_maps(node, EstimateConfig(method="nlls", auto_mask=True))
    placenta = phantom.labels == LABELS["placenta"]
    assert np.nanmedian(result.maps["D"][placenta]) == pytest.approx(np.median(phantom.D[placenta]) * 1e3, rel=0.2)


def test_multivolumeimporter_volume_sequences_carry_their_bvalues_in_frame_labels(scene, phantom):
    """Loaded "as volume sequence", the index is the frame number (no name, no unit) and the multi-volume's
    attributes are copied to the sequence node."""
    unlabelled = type(phantom.series)(phantom.series.volumes, None, phantom.series.geometry)
    sequence = new_sequence_node(scene, unlabelled, "DWI volume sequence")
    sequence.SetIndexName("")
    sequence.SetIndexUnit("")
    assert series_from_nodes(sequence).bvalues is None
    dicom_attributes(sequence, phantom.series.bvalues, tag="Standard.B-value")
    np.testing.assert_array_equal(series_from_nodes(sequence).bvalues, phantom.series.bvalues)
    np.testing.assert_array_equal(series_from_nodes(sequence, [5.0] * 10).bvalues, [5.0] * 10)  # typed ones win


def test_frame_labels_that_are_not_bvalues_are_not_used(scene, phantom):
    node = multivolume_node(scene, phantom)
    dicom_attributes(node, np.arange(10) * 80.0, tag="TriggerTime", units="ms")
    assert series_from_nodes(node).bvalues is None
    assert summarize_series(node).bvalues_source == "missing"
    dicom_attributes(node, phantom.series.bvalues, tag="", units="sec/mm2")  # the units alone say b-values
    np.testing.assert_array_equal(series_from_nodes(node).bvalues, phantom.series.bvalues)


def test_wrong_frame_labels_are_refused(scene, phantom):
    node = multivolume_node(scene, phantom)
    node.SetAttribute("MultiVolume.FrameLabels", frame_labels(phantom.series.bvalues[:-1]))
    with pytest.raises(InputError, match="9 b-values in MultiVolume.FrameLabels for 10 frames"):
        series_from_nodes(node)
    node.SetAttribute("MultiVolume.FrameLabels", "0,ten" + ",1" * 8)
    with pytest.raises(InputError, match="non-numeric frame labels"):
        series_from_nodes(node)


# ------------------------------------------------------------------------------------ damaged NIfTI files


def nifti_series(phantom, path):
    """The phantom as a 4D NIfTI file written by Slicer's own writer (with its .bval file)."""
    return write_series_array(phantom.series, path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_truncated_nifti_series_is_refused(tmp_path, phantom, suffix):
    """Slicer's reader fills the missing part with zeros (plausible maps from half a series): refused."""
    whole = nifti_series(phantom, tmp_path / f"dwi{suffix}")
    raw = gzip.decompress(whole.read_bytes()) if suffix == ".nii.gz" else whole.read_bytes()
    cut = raw[: len(raw) - 4 * 24 * 24]  # the last slice of the last volume
    short = tmp_path / f"short{suffix}"
    short.write_bytes(gzip.compress(cut) if suffix == ".nii.gz" else cut)
    with pytest.raises(InputError, match=r"short.* is truncated: it holds .* of the 46,080 bytes of voxel data"):
        read_series_array(short)
    if suffix == ".nii.gz":  # a download cut short: the compressed stream itself ends early
        broken = tmp_path / "broken.nii.gz"
        broken.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
        with pytest.raises(InputError, match="broken.nii.gz is damaged or truncated"):
            read_series_array(broken)
    np.testing.assert_array_equal(read_series_array(whole).volumes, phantom.series.volumes)  # intact: unchanged


def test_a_truncated_volume_is_refused(tmp_path, phantom):
    path = write_volume_array(phantom.series.volumes[0], phantom.series.geometry, tmp_path / "b0.nii")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InputError, match="b0.nii is truncated"):
        read_volume_array(path)


def test_nan_and_inf_in_a_nifti_series_follow_the_nan_rules(tmp_path, phantom):
    """NaN / Inf voxels of the file stay NaN / Inf when read (Slicer's reader makes them 0, which the fit took
    for a signal), so these voxels are NaN in every map (README: invalid voxels are NaN) and the others are
    unchanged."""
    volumes = phantom.series.volumes.copy()
    placenta = np.argwhere(phantom.labels == LABELS["placenta"])
    (k1, j1, i1), (k2, j2, i2) = placenta[0], placenta[-1]
    volumes[3, k1, j1, i1] = np.nan
    volumes[7, k2, j2, i2] = np.inf
    oblique = VolumeGeometry(
        (1.5, 1.5, 4.0), (-20.0, 12.0, 3.0), ((0.96, -0.28, 0.0), (0.28, 0.96, 0.0), (0.0, 0.0, 1.0))
    )
    for suffix in (".nii", ".nii.gz"):
        path = write_series_array(DiffusionSeries(volumes, phantom.series.bvalues, oblique), tmp_path / f"nan{suffix}")
        series = read_series_array(path)
        assert np.isnan(series.volumes[3, k1, j1, i1]) and np.isposinf(series.volumes[7, k2, j2, i2])
        np.testing.assert_array_equal(series.volumes, volumes)  # NaN == NaN here
        assert series.geometry.matches(oblique)
    maps = fit(series.signals, series.bvalues, method="nlls", mask=phantom.labels == LABELS["placenta"])
    assert np.isnan(maps["f"][k1, j1, i1]) and np.isnan(maps["D"][k2, j2, i2])
    assert np.isfinite(maps["f"][tuple(placenta[1:-1].T)]).all()
    single = write_volume_array(volumes[3], oblique, tmp_path / "b80.nii.gz")
    array, _ = read_volume_array(single)
    others = np.delete(array.ravel(), np.ravel_multi_index((k1, j1, i1), array.shape))
    assert np.isnan(array[k1, j1, i1]) and np.isfinite(others).all()


def test_a_damaged_nifti_is_refused_by_the_fit_command(tmp_path, phantom, run_cli):
    """Exit code 2 and one line, before any fitting."""
    whole = nifti_series(phantom, tmp_path / "dwi.nii")
    whole.write_bytes(whole.read_bytes()[:-1000])
    result = run_cli("ivimestimator", "fit", str(whole), str(tmp_path / "maps"), "--method", "nlls")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "ivimestimator: error: dwi.nii is truncated: it holds 45,080 of the 46,080 bytes of voxel data its header "
        "gives (24 x 24 x 2 x 10 voxels of 4 bytes)"
    ]
    assert not (tmp_path / "maps").exists()
