"""The one bridge between numpy arrays, MRML nodes and image files.

Arrays follow Slicer's convention: a scalar volume is ``array[k, j, i]`` (slice, row, column); a series of
volumes is ``volumes[n, k, j, i]``. Geometry is the full IJK-to-RAS mapping (spacing in mm, origin in mm,
oblique directions), carried by :class:`VolumeGeometry`. Every function that makes a result creates a new
node; input nodes are only read.

Files are read and written through MRML storage nodes (slicer-core has no ``slicer.util.loadVolume``):
3D volumes with ``vtkMRMLVolumeArchetypeStorageNode`` (NRRD, NIfTI, MHA, ...), 4D series with
``vtkMRMLVolumeSequenceStorageNode`` (``.seq.nrrd``/``.nrrd`` keep b-values as the sequence index;
NIfTI keeps them in an FSL-style ``.bval`` file beside the image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

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
    vector volume from DICOM multi-volume import (b-values in its ``MultiVolume.FrameLabels`` attribute), or
    a list of scalar volume nodes. ``bvalues`` (s/mm²), when given, take precedence over those stored in the
    data; otherwise the stored ones are used, or None when there are none.
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
    elif source is not None and source.IsA("vtkMRMLVectorVolumeNode"):
        array, geometry = volume_to_array(source)
        stored = _multivolume_bvalues(source)
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
    if _is_b_index(sequence.GetIndexName(), sequence.GetIndexUnit()):
        try:
            stored = [float(sequence.GetNthIndexValue(i)) for i in range(sequence.GetNumberOfDataNodes())]
        except ValueError as error:
            raise InputError(f"sequence {sequence.GetName()!r} has a non-numeric b-value index: {error}") from error
    return arrays, geometries, names, stored


def _is_b_index(name: str, unit: str) -> bool:
    return (name or "").strip().lower() in B_INDEX_NAMES or "s/mm" in (unit or "").replace("²", "2").lower()


def _multivolume_bvalues(node: Any) -> Optional[list[float]]:
    """b-values of a DICOM multi-volume whose frames are identified by a b-value tag, else None."""
    labels = node.GetAttribute("MultiVolume.FrameLabels")
    tag = (node.GetAttribute("MultiVolume.FrameIdentifyingDICOMTagName") or "").lower()
    if not labels or "bvalue" not in tag.replace("-", "").replace("_", ""):
        return None
    try:
        return [float(value) for value in labels.split(",")]
    except ValueError as error:
        raise InputError(f"multi-volume {node.GetName()!r} has non-numeric frame labels: {error}") from error


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


def read_volume_array(path: str | os.PathLike) -> tuple[np.ndarray, VolumeGeometry]:
    """Read a 3D image file (NRRD, NIfTI, MHA, ...) as ``(array[k, j, i], geometry)``."""
    import slicer

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such image file: {path}")
    scratch = slicer.vtkMRMLScene()
    storage = scratch.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node = scratch.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise InputError(f"cannot read {path} as a volume")
    return volume_to_array(node)


def read_volume(scene: Any, path: str | os.PathLike, name: Optional[str] = None) -> Any:
    """Read a 3D image file into a new scalar volume node of ``scene``."""
    array, geometry = read_volume_array(path)
    return new_volume_node(scene, array, geometry, name or _stem(Path(path)))


def write_volume(node: Any, path: str | os.PathLike) -> Path:
    """Write a volume node to ``path`` (format from the extension); the node is not modified."""
    import slicer

    path = Path(path)
    _check_writable_suffix(path)
    if node is None or not node.IsA("vtkMRMLVolumeNode") or node.GetImageData() is None:
        raise InputError(f"cannot write {_describe(node)}: not a volume with image data")
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(1)
    if not storage.WriteData(node):
        raise OSError(f"writing {path} failed")
    return path


def write_volume_array(array: np.ndarray, geometry: VolumeGeometry, path: str | os.PathLike) -> Path:
    """Write ``array[k, j, i]`` with ``geometry`` to an image file (through a scratch scene)."""
    import slicer

    return write_volume(new_volume_node(slicer.vtkMRMLScene(), array, geometry, _stem(Path(path))), path)


def read_series_array(path: str | os.PathLike, bvalues: Optional[Sequence[float]] = None) -> DiffusionSeries:
    """Read a 4D image (NRRD or NIfTI) or a folder of 3D volumes (sorted by file name) as a series.

    b-values (s/mm²) come from ``bvalues`` when given, else from the file: the index of a sequence NRRD, or a
    ``.bval`` file beside a NIfTI (``dwi.nii.gz`` -> ``dwi.bval``) or inside a folder; else they stay None.
    """
    import slicer

    path = Path(path)
    scratch = slicer.vtkMRMLScene()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _suffix(p) in VOLUME_SUFFIXES)
        if not files:
            raise InputError(f"folder {path} holds no volume files ({', '.join(VOLUME_SUFFIXES)})")
        source: Any = [new_volume_node(scratch, *read_volume_array(file), name=file.name) for file in files]
        sidecars = sorted(path.glob("*.bval"))
        sidecar = sidecars[0] if len(sidecars) == 1 else None
    elif path.is_file():
        storage = scratch.AddNewNodeByClass("vtkMRMLVolumeSequenceStorageNode")
        storage.SetFileName(str(path))
        source = scratch.AddNewNodeByClass("vtkMRMLSequenceNode", _stem(path))
        if not storage.ReadData(source) or source.GetNumberOfDataNodes() == 0:
            raise InputError(f"cannot read {path} as a 4D series")
        sidecar = path.with_name(_stem(path) + ".bval")
    else:
        raise InputError(f"no such image file or folder: {path}")
    series = series_from_nodes(source, bvalues)
    if series.bvalues is None and sidecar is not None and sidecar.is_file():
        series = DiffusionSeries(series.volumes, read_bvalues_file(sidecar), series.geometry)
    return series


def read_series(scene: Any, path: str | os.PathLike, bvalues: Optional[Sequence[float]] = None) -> Any:
    """Read a 4D image or a folder of volumes (see :func:`read_series_array`) into a new sequence node."""
    return new_sequence_node(scene, read_series_array(path, bvalues), _stem(Path(path)))


def write_series(sequence: Any, path: str | os.PathLike) -> Path:
    """Write a sequence node to a 4D file; for NIfTI the b-values also go to a ``.bval`` file beside it."""
    import slicer

    path = Path(path)
    _check_writable_suffix(path)
    if sequence is None or not sequence.IsA("vtkMRMLSequenceNode"):
        raise InputError(f"cannot write {_describe(sequence)} as a series: not a sequence node")
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = slicer.vtkMRMLVolumeSequenceStorageNode()
    storage.SetFileName(str(path))
    if not storage.WriteData(sequence):
        raise OSError(f"writing {path} failed")
    if _suffix(path) in (".nii", ".nii.gz") and _is_b_index(sequence.GetIndexName(), sequence.GetIndexUnit()):
        values = [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())]
        path.with_name(_stem(path) + ".bval").write_text(" ".join(values) + "\n")
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
