"""The one bridge between numpy arrays, MRML nodes and image files.

Arrays follow Slicer's convention: a scalar volume is ``array[k, j, i]`` (slice, row, column); a series of
volumes is ``volumes[n, k, j, i]``. Geometry is the full IJK-to-RAS mapping (spacing in mm, origin in mm,
oblique directions), carried by :class:`VolumeGeometry`. Every function that makes a result creates a new
node; input nodes are only read.

Files are read and written through MRML storage nodes (slicer-core has no ``slicer.util.loadVolume``):
3D volumes with ``vtkMRMLVolumeArchetypeStorageNode`` (NRRD, NIfTI, MHA, ...), 4D series with
``vtkMRMLVolumeSequenceStorageNode`` (``.seq.nrrd``/``.nrrd`` keep b-values as the sequence index;
NIfTI keeps them in an FSL-style ``.bval`` file beside the image). 4D NIfTI files are read with SimpleITK
(:func:`read_nifti_series_array`), not by the storage node: the released Slicers (5.8, 5.10) and their MRML
(slicer-core 5.11) read no NIfTI sequence. NIfTI files are checked before they are read
(:func:`nifti_nonfinite_values`): truncated ones are refused, and their NaN / Inf voxels, which the storage
node reads as 0, are put back.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from .errors import InputError

#: Sequence index names that mean "b-value" (compared case-insensitively).
B_INDEX_NAMES = ("b", "bvalue", "b-value", "b_value", "bval")
B_UNIT = "s/mm2"
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
GEOMETRY_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class VolumeGeometry:
    """Where voxels are in patient space: ``ras = origin + directions @ (spacing * ijk)``.

    ``spacing``: voxel size along i, j, k in mm; ``origin``: RAS position of voxel (0, 0, 0) in mm;
    ``directions``: 3x3, column c is the unit RAS direction of array axis c (i, j, k).
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    directions: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def ijk_to_ras(self) -> np.ndarray:
        """The 4x4 homogeneous IJK-to-RAS matrix."""
        matrix = np.eye(4)
        matrix[:3, :3] = np.asarray(self.directions, float) * np.asarray(self.spacing, float)[None, :]
        matrix[:3, 3] = self.origin
        return matrix

    @classmethod
    def from_ijk_to_ras(cls, matrix: np.ndarray) -> "VolumeGeometry":
        """Split a 4x4 IJK-to-RAS matrix into spacing, origin and unit directions."""
        matrix = np.asarray(matrix, float)
        spacing = np.linalg.norm(matrix[:3, :3], axis=0)
        if np.any(spacing <= 0):
            raise InputError("IJK-to-RAS matrix has a zero-length axis")
        directions = matrix[:3, :3] / spacing[None, :]
        return cls(tuple(spacing.tolist()), tuple(matrix[:3, 3].tolist()),
                   tuple(tuple(row) for row in directions.tolist()))

    def matches(self, other: "VolumeGeometry", tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> bool:
        """True when both map every voxel to the same place (within ``tolerance_mm`` per unit index)."""
        return bool(np.allclose(self.ijk_to_ras(), other.ijk_to_ras(), atol=tolerance_mm))


_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def array_to_sitk(array: np.ndarray, geometry: VolumeGeometry) -> "SimpleITK.Image":  # noqa: F821
    """A SimpleITK image of ``array[k, j, i]`` with ``geometry`` (ITK works in LPS; converted here)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(array), isVector=np.asarray(array).ndim == 4)
    image.SetSpacing([float(v) for v in geometry.spacing])
    image.SetOrigin((_RAS_TO_LPS @ np.asarray(geometry.origin, float)).tolist())
    image.SetDirection((_RAS_TO_LPS @ np.asarray(geometry.directions, float)).ravel().tolist())
    return image


def physical_points_lps(geometry: VolumeGeometry, index: np.ndarray) -> np.ndarray:
    """ITK physical points (LPS, mm) ``[n, 3]`` of voxel indices ``index [n, 3]`` given as (k, j, i) rows,
    e.g. from ``np.argwhere`` on an ``array[k, j, i]``."""
    ijk = np.asarray(index, float)[:, ::-1]
    ras = ijk @ (np.asarray(geometry.directions, float) * np.asarray(geometry.spacing, float)[None, :]).T \
        + np.asarray(geometry.origin, float)
    return ras @ _RAS_TO_LPS.T


def sitk_to_array(image: "SimpleITK.Image") -> tuple[np.ndarray, VolumeGeometry]:  # noqa: F821
    """``(array[k, j, i], geometry)`` of a 3D SimpleITK image (a copy)."""
    import SimpleITK as sitk

    directions = _RAS_TO_LPS @ np.asarray(image.GetDirection(), float).reshape(3, 3)
    geometry = VolumeGeometry(tuple(float(v) for v in image.GetSpacing()),
                              tuple((_RAS_TO_LPS @ np.asarray(image.GetOrigin(), float)).tolist()),
                              tuple(tuple(row) for row in directions.tolist()))
    return sitk.GetArrayFromImage(image), geometry


def orient_axial(array: np.ndarray, geometry: VolumeGeometry) -> tuple[np.ndarray, VolumeGeometry]:
    """Permute and flip axes so that ``k`` runs inferior to superior, ``j`` anterior to posterior and ``i``
    right to left (the DICOM axial LPS order); voxels keep their positions in space."""
    import SimpleITK as sitk

    return sitk_to_array(sitk.DICOMOrient(array_to_sitk(array, geometry), "LPS"))


def crop(array: np.ndarray, geometry: VolumeGeometry, k: slice, j: slice = slice(None),
         i: slice = slice(None)) -> tuple[np.ndarray, VolumeGeometry]:
    """The sub-volume ``array[k, j, i]`` (unit-step slices) with its origin moved so voxels stay in place."""
    cropped = array[k, j, i]
    starts = [s.indices(n)[0] for s, n in zip((i, j, k), array.shape[2::-1])]
    origin = geometry.ijk_to_ras() @ np.array(starts + [1], float)
    return cropped.copy(), VolumeGeometry(geometry.spacing, tuple(origin[:3].tolist()), geometry.directions)


def geometry_of(node: Any) -> VolumeGeometry:
    """The IJK-to-RAS geometry of a volume node."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return VolumeGeometry.from_ijk_to_ras(np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)]))


def _set_geometry(node: Any, geometry: VolumeGeometry) -> None:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    ijk_to_ras = geometry.ijk_to_ras()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, ijk_to_ras[row, column])
    node.SetIJKToRASMatrix(matrix)


def volume_to_array(node: Any) -> tuple[np.ndarray, VolumeGeometry]:
    """A copy of a volume node's voxels (``[k, j, i]``, or ``[k, j, i, component]``) and its geometry."""
    from slicer.util import arrayFromVolume

    if node is None or not node.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"expected a volume node, got {_describe(node)}")
    if node.GetImageData() is None:
        raise InputError(f"volume {node.GetName()!r} has no image data")
    return np.array(arrayFromVolume(node), copy=True), geometry_of(node)


def new_volume_node(scene: Any, array: np.ndarray, geometry: VolumeGeometry, name: str,
                    class_name: str = "vtkMRMLScalarVolumeNode") -> Any:
    """Add a new volume node named ``name`` to ``scene`` holding a copy of ``array`` with ``geometry``."""
    array = np.asarray(array)
    if array.ndim != 3 and not (array.ndim == 4 and class_name != "vtkMRMLScalarVolumeNode"):
        raise InputError(f"a {class_name} needs a 3D array [k, j, i]; got shape {array.shape}")
    node = scene.AddNewNodeByClass(class_name, name)
    update_volume_node(node, array, geometry)
    node.CreateDefaultDisplayNodes()
    return node


def new_table_node(scene: Any, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    """Add a new table node named ``name``: one column per title in ``columns`` (text where the first row's
    value is a string, numbers otherwise), one table row per entry of ``rows``."""
    import vtk

    table = vtk.vtkTable()
    for index, title in enumerate(columns):
        text = bool(rows) and isinstance(rows[0][index], str)
        column = vtk.vtkStringArray() if text else vtk.vtkDoubleArray()
        column.SetName(title)
        column.SetNumberOfValues(len(rows))
        for row_index, row in enumerate(rows):
            column.SetValue(row_index, row[index] if text else float(row[index]))
        table.AddColumn(column)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.SetAndObserveTable(table)
    node.SetUseColumnTitleAsColumnHeader(True)
    return node


def update_volume_node(node: Any, array: np.ndarray, geometry: VolumeGeometry) -> None:
    """Replace the voxels and geometry of an existing (output) volume node with a copy of ``array``."""
    from slicer.util import updateVolumeFromArray

    updateVolumeFromArray(node, np.ascontiguousarray(array))
    _set_geometry(node, geometry)


@dataclass
class DiffusionSeries:
    """Volumes acquired at several b-values on one grid.

    ``volumes``: float32 ``[n, k, j, i]``; ``bvalues``: n b-values in s/mm² (None when the data did not say);
    ``geometry``: the grid shared by all volumes.
    """

    volumes: np.ndarray
    bvalues: Optional[np.ndarray]
    geometry: VolumeGeometry

    def __post_init__(self) -> None:
        if self.volumes.ndim != 4 or self.volumes.shape[0] < 1:
            raise InputError(f"a diffusion series needs volumes [n, k, j, i]; got shape {self.volumes.shape}")
        if self.bvalues is not None:
            self.bvalues = np.asarray(self.bvalues, dtype=float).ravel()
            if self.bvalues.size != self.volumes.shape[0]:
                raise InputError(
                    f"{self.bvalues.size} b-values given for {self.volumes.shape[0]} volumes")

    @property
    def signals(self) -> np.ndarray:
        """The voxel signals as ``[k, j, i, n]`` (a view): the last axis runs over b-values."""
        return np.moveaxis(self.volumes, 0, -1)


def series_from_nodes(source: Any, bvalues: Optional[Sequence[float]] = None) -> DiffusionSeries:
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
            f"expected a sequence, diffusion-weighted or multi-volume node, or a list of volumes; got {_describe(source)}")
    if len(arrays) == 0:
        raise InputError("the diffusion series is empty")
    for array, name in zip(arrays, names):
        if array.ndim != 3:
            raise InputError(f"volume {name!r} is not a scalar volume (shape {array.shape})")
    for array, geometry, name in zip(arrays, geometries, names):
        if array.shape != arrays[0].shape or not geometry.matches(geometries[0]):
            raise InputError(
                f"volume {name!r} is not on the same grid as {names[0]!r} (shape {array.shape} vs {arrays[0].shape}); "
                "resample the series onto one grid first")
    chosen = bvalues if bvalues is not None else stored
    return DiffusionSeries(np.stack(arrays).astype(np.float32, copy=False),
                           None if chosen is None else np.asarray(chosen, float), geometries[0])


def _read_sequence(sequence: Any) -> tuple[list, list, list, Optional[list[float]]]:
    arrays, geometries, names = [], [], []
    for index in range(sequence.GetNumberOfDataNodes()):
        node = sequence.GetNthDataNode(index)
        if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
            raise InputError(f"item {index} of sequence {sequence.GetName()!r} is {_describe(node)}, not a scalar volume")
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
    return bool(node.IsA("vtkMRMLVectorVolumeNode") or node.IsA("vtkMRMLMultiVolumeNode")
                or (node.IsA("vtkMRMLScalarVolumeNode") and node.GetAttribute(FRAME_LABELS) is not None))


def _frames_array(node: Any) -> tuple[np.ndarray, VolumeGeometry]:
    """A copy of a multi-component volume's voxels as ``[k, j, i, frame]`` and its geometry (read from the
    image data: ``slicer.util.arrayFromVolume`` refuses components on a plain scalar volume node)."""
    from vtk.util.numpy_support import vtk_to_numpy

    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"multi-volume {node.GetName()!r} has no image data")
    shape = tuple(reversed(image.GetDimensions())) + (image.GetNumberOfScalarComponents(),)
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape).copy(), geometry_of(node)


def frame_label_bvalues(node: Any, frames: int) -> Optional[list[float]]:
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
        raise InputError(f"multi-volume {node.GetName()!r} has {len(values)} b-values in {FRAME_LABELS} for {frames} "
                         "frames: type the b-values instead")
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
        _set_geometry(node, series.geometry)
        sequence.SetDataNodeAtValue(node, label)
    return sequence


def _format_b(b: float) -> str:
    return str(int(b)) if float(b).is_integer() else repr(float(b))


# ---------------------------------------------------------------------------------------------- files


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _check_writable_suffix(path: Path) -> None:
    if _suffix(path) not in VOLUME_SUFFIXES:
        raise InputError(f"cannot write {path.name}: use one of {', '.join(VOLUME_SUFFIXES)}")


#: NIfTI datatype codes (``nifti1.h``) of real voxel types -> numpy dtype (byte order added from the header).
NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}
#: Bytes read from a NIfTI data stream at a time.
_NIFTI_CHUNK = 1 << 24


@dataclass(frozen=True)
class NonfiniteVoxels:
    """NaN / Inf values of an image file of ``voxels`` values: positions in its voxel order (``array.ravel()``
    of what Slicer reads: i fastest, then j, k and volume) and the values there."""

    voxels: int
    flat_index: np.ndarray
    values: np.ndarray


def _nifti_layout(header: bytes, path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(dimensions dim[1..dim[0]], voxel dtype, data offset in bytes) from the first 540 bytes of a NIfTI-1 or
    NIfTI-2 file."""
    for order in "<>":
        size = np.frombuffer(header[:4], f"{order}i4")[0] if len(header) >= 4 else 0
        if size == 348 and len(header) >= 348:  # NIfTI-1
            # dim int16[8] at byte 40, datatype int16 at 70, vox_offset float32 at 108
            dims = np.frombuffer(header[40:56], f"{order}i2").astype(np.int64)
            code = int(np.frombuffer(header[70:72], f"{order}i2")[0])
            offset = int(np.frombuffer(header[108:112], f"{order}f4")[0])
            break
        if size == 540 and len(header) >= 540:  # NIfTI-2
            # datatype int16 at byte 12, dim int64[8] at 16, vox_offset int64 at 168
            dims = np.frombuffer(header[16:80], f"{order}i8")
            code = int(np.frombuffer(header[12:14], f"{order}i2")[0])
            offset = int(np.frombuffer(header[168:176], f"{order}i8")[0])
            break
    else:
        raise InputError(f"{path.name} is not a NIfTI file (no valid header)")
    rank = int(dims[0])
    if not 1 <= rank <= 7 or np.any(dims[1:rank + 1] < 1) or offset < 0:
        raise InputError(f"{path.name} has an invalid NIfTI header (dimensions {dims[:rank + 1].tolist()})")
    if code not in NIFTI_DTYPES:
        raise InputError(f"{path.name} has NIfTI datatype {code}, not a real voxel type this reader supports")
    return tuple(int(d) for d in dims[1:rank + 1]), np.dtype(order + NIFTI_DTYPES[code]), offset


def nifti_shape(path: str | os.PathLike) -> Optional[tuple[int, ...]]:
    """The dimensions of a ``.nii`` / ``.nii.gz`` file from its header; None for other formats."""
    import gzip

    path = Path(path)
    if _suffix(path) not in (".nii", ".nii.gz"):
        return None
    with (gzip.open if _suffix(path) == ".nii.gz" else open)(path, "rb") as stream:
        return _nifti_layout(stream.read(540), path)[0]


def nifti_nonfinite_values(path: str | os.PathLike) -> Optional[NonfiniteVoxels]:
    """Check a ``.nii`` / ``.nii.gz`` file's voxel data against its header; None for other formats.

    Slicer's reader (ITK) fills the part missing from a truncated file with zeros and reads NaN / Inf as 0,
    which would give plausible but wrong maps. So the data are streamed (``.gz`` decompressed on the fly) and
    counted: fewer bytes than the header's shape x voxel size, or a damaged compressed stream, is an
    InputError. Returns the NaN / Inf voxels of a floating-point file (None when there are none), for the
    caller to put back."""
    import gzip
    import zlib

    path = Path(path)
    if _suffix(path) not in (".nii", ".nii.gz"):
        return None
    indices, values, seen = [], [], 0  # seen: data bytes checked
    try:
        with (gzip.open if _suffix(path) == ".nii.gz" else open)(path, "rb") as stream:
            header = stream.read(540)
            shape, dtype, offset = _nifti_layout(header, path)
            voxels = int(np.prod(shape, dtype=np.int64))
            total = voxels * dtype.itemsize
            stream.read(max(0, offset - len(header)))  # the rest of the header: extensions
            carry = header[offset:offset + total]  # data bytes read but not yet checked
            while True:
                wanted = total - seen - len(carry)
                block = carry + (stream.read(min(_NIFTI_CHUNK, wanted)) if wanted > 0 else b"")
                usable = len(block) - len(block) % dtype.itemsize
                if usable == 0:  # all checked, or the file ended
                    break
                if dtype.kind == "f":
                    data = np.frombuffer(block[:usable], dtype)
                    bad = np.flatnonzero(~np.isfinite(data))
                    indices.append(bad + seen // dtype.itemsize)
                    values.append(data[bad])
                carry, seen = block[usable:], seen + usable
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(f"{path.name} is damaged or truncated ({error}); cannot read it") from error
    if seen < total:
        grid = " x ".join(map(str, shape))
        raise InputError(f"{path.name} is truncated: it holds {seen:,} of the {total:,} bytes of voxel data its header "
                         f"gives ({grid} voxels of {dtype.itemsize} bytes)")
    found = np.concatenate(indices) if indices else np.empty(0, np.int64)
    return NonfiniteVoxels(voxels, found, np.concatenate(values)) if found.size else None


def _restore_nonfinite(array: np.ndarray, nonfinite: Optional[NonfiniteVoxels], path: Path) -> np.ndarray:
    """``array`` (read by Slicer from ``path``) with the file's NaN / Inf voxels put back."""
    if nonfinite is None:
        return array
    if array.size != nonfinite.voxels:
        raise InputError(f"{path.name} holds NaN / Inf voxels, and its {nonfinite.voxels} values were read as "
                         f"{array.size}: cannot tell which voxels they are")
    restored = array.astype(np.promote_types(array.dtype, np.float32), copy=True)
    restored.reshape(-1)[nonfinite.flat_index] = nonfinite.values
    return restored


def read_volume_array(path: str | os.PathLike) -> tuple[np.ndarray, VolumeGeometry]:
    """Read a 3D image file (NRRD, NIfTI, MHA, ...) as ``(array[k, j, i], geometry)``. A NIfTI file is checked
    first (:func:`nifti_nonfinite_values`): a truncated one is refused, and its NaN / Inf voxels keep their
    values (Slicer's reader gives 0 for them)."""
    import slicer

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such image file: {path}")
    nonfinite = nifti_nonfinite_values(path)  # refuses a truncated NIfTI file before Slicer reads zeros for it
    shape = nifti_shape(path)
    if shape is not None and int(np.prod(shape[3:], dtype=np.int64)) > 1:  # Slicer 5.10's reader takes volume 0
        raise InputError(f"{path} holds {int(np.prod(shape[3:]))} volumes (a 4D series): cannot read it as a volume")
    scratch = slicer.vtkMRMLScene()
    storage = scratch.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node = scratch.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise InputError(f"cannot read {path} as a volume")
    array, geometry = volume_to_array(node)
    return _restore_nonfinite(array, nonfinite, path), geometry


def read_volume(scene: Any, path: str | os.PathLike, name: Optional[str] = None) -> Any:
    """Read a 3D image file into a new scalar volume node of ``scene``."""
    array, geometry = read_volume_array(path)
    return new_volume_node(scene, array, geometry, name or _stem(Path(path)))


@contextmanager
def _atomic_write(path: Path) -> Iterator[Path]:
    """Where to write ``path``: the same name in a new folder beside it (``.<name>.partial-<pid>``), so the
    writer still picks the format from the real suffix and a detached header (``.nhdr``, ``.mhd``) names its
    data file by the final name. When the block completes, every file written there is moved into place with
    ``os.replace`` (data files first, ``path`` last); when it fails or is interrupted (Ctrl-C), the folder is
    deleted: no partial file is ever left, and an existing ``path`` stays as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)  # left by a killed run of a process with the same id
    scratch.mkdir()
    try:
        yield scratch / path.name
        if not (scratch / path.name).is_file():
            raise OSError(f"writing {path} failed: nothing was written")
        files = sorted((item for item in scratch.iterdir() if item.is_file()), key=lambda item: item.name == path.name)
        for written in files:
            os.replace(written, path.parent / written.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_volume(node: Any, path: str | os.PathLike) -> Path:
    """Write a volume node to ``path`` (format from the extension), atomically (:func:`_atomic_write`); the node
    is not modified."""
    import slicer

    path = Path(path)
    _check_writable_suffix(path)
    if node is None or not node.IsA("vtkMRMLVolumeNode") or node.GetImageData() is None:
        raise InputError(f"cannot write {_describe(node)}: not a volume with image data")
    with _atomic_write(path) as temporary:
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(temporary))
        storage.SetUseCompression(1)
        if not storage.WriteData(node):
            raise OSError(f"writing {path} failed")
    return path


def write_volume_array(array: np.ndarray, geometry: VolumeGeometry, path: str | os.PathLike) -> Path:
    """Write ``array[k, j, i]`` with ``geometry`` to an image file (through a scratch scene), atomically."""
    import slicer

    return write_volume(new_volume_node(slicer.vtkMRMLScene(), array, geometry, _stem(Path(path))), path)


def read_series_array(path: str | os.PathLike, bvalues: Optional[Sequence[float]] = None) -> DiffusionSeries:
    """Read a 4D image (NRRD or NIfTI) or a folder of 3D volumes (sorted by file name) as a series.

    b-values (s/mm²) come from ``bvalues`` when given, else from the file: the index of a sequence NRRD, or a
    ``.bval`` file beside a NIfTI (``dwi.nii.gz`` -> ``dwi.bval``) or inside a folder; else they stay None.
    NIfTI files are checked as in :func:`read_volume_array` (truncated: refused; NaN / Inf: kept).
    """
    import slicer

    path = Path(path)
    scratch = slicer.vtkMRMLScene()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _suffix(p) in VOLUME_SUFFIXES)
        if not files:
            raise InputError(f"folder {path} holds no volume files ({', '.join(VOLUME_SUFFIXES)})")
        series = series_from_nodes([new_volume_node(scratch, *read_volume_array(file), name=file.name)
                                    for file in files], bvalues)
        sidecars = sorted(path.glob("*.bval"))
        sidecar = sidecars[0] if len(sidecars) == 1 else None
    elif path.is_file() and _suffix(path) in (".nii", ".nii.gz"):
        series = read_nifti_series_array(path, bvalues)
        sidecar = path.with_name(_stem(path) + ".bval")
    elif path.is_file():
        storage = scratch.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
        storage.SetFileName(str(path))
        source = scratch.AddNewNodeByClass("vtkMRMLSequenceNode", _stem(path))
        if not storage.ReadData(source) or source.GetNumberOfDataNodes() == 0:
            raise InputError(f"cannot read {path} as a 4D series")
        series = series_from_nodes(source, bvalues)
        sidecar = path.with_name(_stem(path) + ".bval")
    else:
        raise InputError(f"no such image file or folder: {path}")
    if series.bvalues is None and sidecar is not None and sidecar.is_file():
        series = DiffusionSeries(series.volumes, read_bvalues_file(sidecar), series.geometry)
    return series


def read_nifti_series_array(path: str | os.PathLike, bvalues: Optional[Sequence[float]] = None) -> DiffusionSeries:
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
        raise InputError(f"cannot read {path} as a 4D series: it holds a {image.GetDimension()}D image"
                         + (f" of {components}-component voxels" if components > 1 else "")
                         + " (a series is one 4D NIfTI file: i, j, k, volume)")
    direction = np.asarray(image.GetDirection(), float).reshape(4, 4)
    if not (np.allclose(direction[3, :3], 0.0) and np.allclose(direction[:3, 3], 0.0)):
        raise InputError(f"cannot read {path} as a 4D series: its 4th axis is not time (it mixes with space)")
    spacing, origin = image.GetSpacing()[:3], np.asarray(image.GetOrigin()[:3], float)
    geometry = VolumeGeometry(tuple(float(v) for v in spacing), tuple((_RAS_TO_LPS @ origin).tolist()),
                              tuple(tuple(row) for row in (_RAS_TO_LPS @ direction[:3, :3]).tolist()))
    volumes = _restore_nonfinite(sitk.GetArrayFromImage(image), nonfinite, path)  # [n, k, j, i]
    return DiffusionSeries(volumes.astype(np.float32, copy=False),
                           None if bvalues is None else np.asarray(bvalues, float), geometry)


def read_series(scene: Any, path: str | os.PathLike, bvalues: Optional[Sequence[float]] = None) -> Any:
    """Read a 4D image or a folder of volumes (see :func:`read_series_array`) into a new sequence node."""
    return new_sequence_node(scene, read_series_array(path, bvalues), _stem(Path(path)))


def write_series(sequence: Any, path: str | os.PathLike) -> Path:
    """Write a sequence node to a 4D file, atomically (:func:`_atomic_write`); for NIfTI the b-values also go to
    a ``.bval`` file beside it."""
    import slicer

    path = Path(path)
    _check_writable_suffix(path)
    if sequence is None or not sequence.IsA("vtkMRMLSequenceNode"):
        raise InputError(f"cannot write {_describe(sequence)} as a series: not a sequence node")
    with _atomic_write(path) as temporary:
        storage = slicer.vtkMRMLVolumeSequenceStorageNode()
        storage.SetFileName(str(temporary))
        if not storage.WriteData(sequence):
            raise OSError(f"writing {path} failed")
        if _suffix(path) in (".nii", ".nii.gz") and _is_b_index(sequence.GetIndexName(), sequence.GetIndexUnit()):
            values = [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]
            temporary.with_name(_stem(path) + ".bval").write_text(" ".join(values) + "\n")
    return path


def write_series_array(series: DiffusionSeries, path: str | os.PathLike) -> Path:
    """Write a :class:`DiffusionSeries` to a 4D file (through a scratch scene), b-values included."""
    import slicer

    return write_series(new_sequence_node(slicer.vtkMRMLScene(), series, _stem(Path(path))), path)


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


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".seq.nrrd", ".seq.nhdr", ".nii.gz") + VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _describe(node: Any) -> str:
    if node is None:
        return "nothing (None)"
    if hasattr(node, "GetClassName"):
        name = node.GetName() if hasattr(node, "GetName") else ""
        return f"{node.GetClassName()} {name!r}"
    return type(node).__name__
