"""Diffusion-weighted series: volumes at several b-values (s/mm²) on one grid, ``volumes[n, k, j, i]``.

Read from what Slicer holds (sequence, DWI and DICOM multi-volume nodes, lists of volumes) and from files:
4D series with ``vtkMRMLVolumeSequenceStorageNode`` (``.seq.nrrd``/``.nrrd`` keep b-values as the sequence
index; NIfTI keeps them in an FSL-style ``.bval`` file beside the image). 4D NIfTI files are read with
SimpleITK (:func:`read_nifti_series_array`), not by the storage node: the released Slicers (5.8, 5.10) and
their MRML (slicer-core 5.11) read no NIfTI sequence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from FastMRICommon.errors import InputError
from FastMRICommon.geometry import RAS_TO_LPS, VolumeGeometry, vector3
from FastMRICommon.mrml_nodes import describe_node, geometry_of, new_volume_node, set_geometry, volume_to_array
from FastMRICommon.volume_files import (
    VOLUME_SUFFIXES,
    atomic_write,
    check_writable_suffix,
    file_stem,
    file_suffix,
    nifti_nonfinite_values,
    read_volume_array,
    restore_nonfinite,
)

#: Sequence index names that mean "b-value" (compared case-insensitively).
B_INDEX_NAMES = ("b", "bvalue", "b-value", "b_value", "bval")


B_UNIT = "s/mm2"


@dataclass
class DiffusionSeries:
    """Volumes acquired at several b-values on one grid.

    ``volumes``: float32 ``[n, k, j, i]``; ``bvalues``: n b-values in s/mm² (None when the data did not say);
    ``geometry``: the grid shared by all volumes.
    """

    volumes: np.ndarray
    bvalues: np.ndarray | None
    geometry: VolumeGeometry

    def __post_init__(self) -> None:
        if self.volumes.ndim != 4 or self.volumes.shape[0] < 1:
            raise InputError(f"a diffusion series needs volumes [n, k, j, i]; got shape {self.volumes.shape}")
        if self.bvalues is not None:
            self.bvalues = np.asarray(self.bvalues, dtype=float).ravel()
            if self.bvalues.size != self.volumes.shape[0]:
                raise InputError(f"{self.bvalues.size} b-values given for {self.volumes.shape[0]} volumes")

    @property
    def signals(self) -> np.ndarray:
        """The voxel signals as ``[k, j, i, n]`` (a view): the last axis runs over b-values."""
        return np.moveaxis(self.volumes, 0, -1)


def series_from_nodes(source: Any, bvalues: Sequence[float] | np.ndarray | None = None) -> DiffusionSeries:
    """Read a diffusion series from what Slicer holds.

    ``source`` is a ``vtkMRMLSequenceNode`` of scalar volumes, a ``vtkMRMLDiffusionWeightedVolumeNode``, a
    DICOM multi-volume (:func:`is_multivolume`: one frame per component), or a list of scalar volume nodes.
    ``bvalues`` (s/mm²), when given, take precedence over those stored in the data; otherwise the stored ones
    are used (a b-value sequence index, the DWI node's b-values, or MultiVolumeImporter's frame labels when its
    frames are told apart by a b-value tag, see :func:`frame_label_bvalues`), or None when there are none.
    """
    if isinstance(source, (list, tuple)):
        pairs = [volume_to_array(node) for node in source]
        arrays, geometries = [array for array, _ in pairs], [geometry for _, geometry in pairs]
        names, stored = [node.GetName() for node in source], None
    elif source is not None and source.IsA("vtkMRMLSequenceNode"):
        arrays, geometries, names, stored = _read_sequence(source)
    elif source is not None and source.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        array, geometry = volume_to_array(source)
        values = source.GetBValues()
        stored = [values.GetValue(i) for i in range(values.GetNumberOfTuples())] if values is not None else None
        arrays, geometries = list(np.moveaxis(array, -1, 0)), [geometry] * array.shape[-1]
        names = [f"{source.GetName()}[{index}]" for index in range(array.shape[-1])]
    elif source is not None and is_multivolume(source):
        array, geometry = _frames_array(source)
        stored = frame_label_bvalues(source, array.shape[-1])
        arrays, geometries = list(np.moveaxis(array, -1, 0)), [geometry] * array.shape[-1]
        names = [f"{source.GetName()}[{index}]" for index in range(array.shape[-1])]
    else:
        raise InputError(
            "expected a sequence, diffusion-weighted or multi-volume node, or a list of volumes; "
            f"got {describe_node(source)}"
        )
    if len(arrays) == 0:
        raise InputError("the diffusion series is empty")
    for array, name in zip(arrays, names):
        if array.ndim != 3:
            raise InputError(f"volume {name!r} is not a scalar volume (shape {array.shape})")
    for array, geometry, name in zip(arrays, geometries, names):
        if array.shape != arrays[0].shape or not geometry.matches(geometries[0]):
            raise InputError(
                f"volume {name!r} is not on the same grid as {names[0]!r} (shape {array.shape} vs {arrays[0].shape}); "
                "resample the series onto one grid first"
            )
    chosen = bvalues if bvalues is not None else stored
    return DiffusionSeries(
        np.stack(arrays).astype(np.float32, copy=False),
        None if chosen is None else np.asarray(chosen, float),
        geometries[0],
    )


def _read_sequence(sequence: Any) -> tuple[list, list, list, list[float] | None]:
    arrays, geometries, names = [], [], []
    for index in range(sequence.GetNumberOfDataNodes()):
        node = sequence.GetNthDataNode(index)
        if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
            raise InputError(
                f"item {index} of sequence {sequence.GetName()!r} is {describe_node(node)}, not a scalar volume"
            )
        array, geometry = volume_to_array(node)
        arrays.append(array)
        geometries.append(geometry)
        names.append(f"{sequence.GetName()}[{sequence.GetNthIndexValue(index)}]")
    stored = None
    count = sequence.GetNumberOfDataNodes()
    if _is_b_index(sequence.GetIndexName(), sequence.GetIndexUnit()):
        try:
            stored = [float(sequence.GetNthIndexValue(i)) for i in range(count)]
        except ValueError as error:
            raise InputError(f"sequence {sequence.GetName()!r} has a non-numeric b-value index: {error}") from error
    else:  # MultiVolumeImporter's "volume sequence": index = frame number 0, 1, ..., b-values in the frame labels
        labels = frame_label_bvalues(sequence, count)
        frames = [sequence.GetNthIndexValue(i) for i in range(count)]
        if labels is not None and set(frames) == {str(frame) for frame in range(count)}:
            stored = [labels[int(frame)] for frame in frames]  # items in index order, labels in frame order
        else:
            stored = labels
    return arrays, geometries, names, stored


def _is_b_index(name: str, unit: str) -> bool:
    return (name or "").strip().lower() in B_INDEX_NAMES or "s/mm" in (unit or "").replace("²", "2").lower()


#: Attributes MultiVolumeImporter (``MultiVolumeImporterPlugin.py``, fedorov/MultiVolumeImporter) gives a DICOM
#: multi-volume, and copies to the sequence node it makes when loading one "as volume sequence": the frame labels
#: (one number per frame, comma separated) and the DICOM tag, with its units, that tells the frames apart.
FRAME_LABELS = "MultiVolume.FrameLabels"


FRAME_TAG = "MultiVolume.FrameIdentifyingDICOMTagName"


FRAME_TAG_UNITS = "MultiVolume.FrameIdentifyingDICOMTagUnits"


def is_multivolume(node: Any) -> bool:
    """A volume node holding one frame per scalar component: a vector volume, MultiVolumeExplorer's
    ``vtkMRMLMultiVolumeNode`` (a scalar volume subclass, checked by class name: slicer-core lacks it), or any
    scalar volume carrying MultiVolumeImporter's frame labels."""
    return bool(
        node.IsA("vtkMRMLVectorVolumeNode")
        or node.IsA("vtkMRMLMultiVolumeNode")
        or (node.IsA("vtkMRMLScalarVolumeNode") and node.GetAttribute(FRAME_LABELS) is not None)
    )


def _frames_array(node: Any) -> tuple[np.ndarray, VolumeGeometry]:
    """A copy of a multi-component volume's voxels as ``[k, j, i, frame]`` and its geometry (read from the
    image data: ``slicer.util.arrayFromVolume`` refuses components on a plain scalar volume node)."""
    from vtk.util.numpy_support import vtk_to_numpy

    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"multi-volume {node.GetName()!r} has no image data")
    shape = tuple(reversed(image.GetDimensions())) + (image.GetNumberOfScalarComponents(),)
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape).copy(), geometry_of(node)


def frame_label_bvalues(node: Any, frames: int) -> list[float] | None:
    """b-values (s/mm²) from a node's MultiVolumeImporter frame labels when its frames are identified by a
    b-value tag (``Siemens.B-value``, ``GE.B-value``, ``Philips.B-value``, ``Standard.B-value``) or the tag's
    units are s/mm² (``sec/mm2``); None when there are no labels or they are not b-values (trigger times,
    echo times, ...). Labels that are not ``frames`` numbers are refused."""
    labels = node.GetAttribute(FRAME_LABELS)
    tag = (node.GetAttribute(FRAME_TAG) or "").lower().replace("-", "").replace("_", "")
    units = (node.GetAttribute(FRAME_TAG_UNITS) or "").lower().replace("²", "2").replace("sec/", "s/").replace(" ", "")
    if not labels or not ("bvalue" in tag or units == "s/mm2"):
        return None
    try:
        values = [float(value) for value in labels.split(",")]
    except ValueError as error:
        raise InputError(f"multi-volume {node.GetName()!r} has non-numeric frame labels: {error}") from error
    if len(values) != frames:
        raise InputError(
            f"multi-volume {node.GetName()!r} has {len(values)} b-values in {FRAME_LABELS} for {frames} "
            "frames: type the b-values instead"
        )
    return values


def new_sequence_node(scene: Any, series: DiffusionSeries, name: str) -> Any:
    """Add a new ``vtkMRMLSequenceNode`` holding ``series`` (index "b" in s/mm² when b-values are known)."""
    import slicer
    from slicer.util import updateVolumeFromArray

    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    if series.bvalues is not None:
        sequence.SetIndexName("b")
        sequence.SetIndexUnit(B_UNIT)
        labels = [_format_b(b) for b in series.bvalues]
    else:
        sequence.SetIndexName("volume")
        sequence.SetIndexUnit("")
        labels = [str(index) for index in range(series.volumes.shape[0])]
    sequence.SetIndexType(sequence.NumericIndex)
    for label, volume in zip(labels, series.volumes):
        node = slicer.vtkMRMLScalarVolumeNode()
        updateVolumeFromArray(node, np.ascontiguousarray(volume))
        set_geometry(node, series.geometry)
        sequence.SetDataNodeAtValue(node, label)
    return sequence


def _format_b(b: float) -> str:
    return str(int(b)) if float(b).is_integer() else repr(float(b))


def read_series_array(path: str | os.PathLike, bvalues: Sequence[float] | None = None) -> DiffusionSeries:
    """Read a 4D image (NRRD or NIfTI) or a folder of 3D volumes (sorted by file name) as a series.

    b-values (s/mm²) come from ``bvalues`` when given, else from the file: the index of a sequence NRRD, or a
    ``.bval`` file beside a NIfTI (``dwi.nii.gz`` -> ``dwi.bval``) or inside a folder; else they stay None.
    NIfTI files are checked as in :func:`read_volume_array` (truncated: refused; NaN / Inf: kept).
    """
    import slicer

    path = Path(path)
    scratch = slicer.vtkMRMLScene()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and file_suffix(p) in VOLUME_SUFFIXES)
        if not files:
            raise InputError(f"folder {path} holds no volume files ({', '.join(VOLUME_SUFFIXES)})")
        series = series_from_nodes(
            [new_volume_node(scratch, *read_volume_array(file), name=file.name) for file in files], bvalues
        )
        sidecars = sorted(path.glob("*.bval"))
        sidecar = sidecars[0] if len(sidecars) == 1 else None
    elif path.is_file() and file_suffix(path) in (".nii", ".nii.gz"):
        series = read_nifti_series_array(path, bvalues)
        sidecar = path.with_name(file_stem(path) + ".bval")
    elif path.is_file():
        storage = scratch.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
        storage.SetFileName(str(path))
        source = scratch.AddNewNodeByClass("vtkMRMLSequenceNode", file_stem(path))
        if not storage.ReadData(source) or source.GetNumberOfDataNodes() == 0:
            raise InputError(f"cannot read {path} as a 4D series")
        series = series_from_nodes(source, bvalues)
        sidecar = path.with_name(file_stem(path) + ".bval")
    else:
        raise InputError(f"no such image file or folder: {path}")
    if series.bvalues is None and sidecar is not None and sidecar.is_file():
        series = DiffusionSeries(series.volumes, read_bvalues_file(sidecar), series.geometry)
    return series


def read_nifti_series_array(path: str | os.PathLike, bvalues: Sequence[float] | None = None) -> DiffusionSeries:
    """Read a 4D NIfTI file (``.nii`` / ``.nii.gz``: i, j, k, volume) as a series, with SimpleITK (ITK's NIfTI
    reader, as Slicer's), so that it does not depend on the NIfTI sequence support of Slicer's storage node,
    which no released Slicer has. The file is checked first as in :func:`read_volume_array` (truncated:
    refused; NaN / Inf: kept). b-values (s/mm²) are ``bvalues`` or None (a ``.bval`` file beside it is
    :func:`read_series_array`'s business)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such image file: {path}")
    nonfinite = nifti_nonfinite_values(path)  # refuses a truncated file before ITK reads zeros for it
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"cannot read {path} as a 4D series ({str(error).strip().splitlines()[-1]})") from error
    if image.GetDimension() != 4 or image.GetNumberOfComponentsPerPixel() != 1:
        components = image.GetNumberOfComponentsPerPixel()
        raise InputError(
            f"cannot read {path} as a 4D series: it holds a {image.GetDimension()}D image"
            + (f" of {components}-component voxels" if components > 1 else "")
            + " (a series is one 4D NIfTI file: i, j, k, volume)"
        )
    direction = np.asarray(image.GetDirection(), float).reshape(4, 4)
    if not (np.allclose(direction[3, :3], 0.0) and np.allclose(direction[:3, 3], 0.0)):
        raise InputError(f"cannot read {path} as a 4D series: its 4th axis is not time (it mixes with space)")
    spacing, origin = image.GetSpacing()[:3], np.asarray(image.GetOrigin()[:3], float)
    geometry = VolumeGeometry(
        vector3(spacing),
        vector3(RAS_TO_LPS @ origin),
        tuple(tuple(row) for row in (RAS_TO_LPS @ direction[:3, :3]).tolist()),
    )
    volumes = restore_nonfinite(sitk.GetArrayFromImage(image), nonfinite, path)  # [n, k, j, i]
    return DiffusionSeries(
        volumes.astype(np.float32, copy=False), None if bvalues is None else np.asarray(bvalues, float), geometry
    )


def read_series(scene: Any, path: str | os.PathLike, bvalues: Sequence[float] | None = None) -> Any:
    """Read a 4D image or a folder of volumes (see :func:`read_series_array`) into a new sequence node."""
    return new_sequence_node(scene, read_series_array(path, bvalues), file_stem(Path(path)))


def write_series(sequence: Any, path: str | os.PathLike) -> Path:
    """Write a sequence node to a 4D file, atomically (:func:`atomic_write`); for NIfTI the b-values also go to
    a ``.bval`` file beside it."""
    import slicer

    path = Path(path)
    check_writable_suffix(path)
    if sequence is None or not sequence.IsA("vtkMRMLSequenceNode"):
        raise InputError(f"cannot write {describe_node(sequence)} as a series: not a sequence node")
    with atomic_write(path) as temporary:
        storage = slicer.vtkMRMLVolumeSequenceStorageNode()
        storage.SetFileName(str(temporary))
        if not storage.WriteData(sequence):
            raise OSError(f"writing {path} failed")
        if file_suffix(path) in (".nii", ".nii.gz") and _is_b_index(sequence.GetIndexName(), sequence.GetIndexUnit()):
            values = [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]
            temporary.with_name(file_stem(path) + ".bval").write_text(" ".join(values) + "\n")
    return path


def write_series_array(series: DiffusionSeries, path: str | os.PathLike) -> Path:
    """Write a :class:`DiffusionSeries` to a 4D file (through a scratch scene), b-values included."""
    import slicer

    return write_series(new_sequence_node(slicer.vtkMRMLScene(), series, file_stem(Path(path))), path)


def read_bvalues_file(path: str | os.PathLike) -> np.ndarray:
    """b-values (s/mm²) from a text file: whitespace- or comma-separated numbers (FSL ``.bval`` style)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such b-value file: {path}")
    return parse_bvalues(path.read_text(), source=str(path))


def parse_bvalues(text: str, source: str = "b-values") -> np.ndarray:
    """Parse ``"0,10,20"`` or ``"0 10 20"`` into a float array (s/mm²); refuse non-numbers and negatives."""
    tokens = text.replace(",", " ").split()
    try:
        values = np.array([float(token) for token in tokens])
    except ValueError as error:
        raise InputError(f"{source}: not a list of numbers ({error})") from error
    if values.size == 0:
        raise InputError(f"{source}: no b-values found")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InputError(f"{source}: b-values must be finite and >= 0 s/mm²")
    return values
