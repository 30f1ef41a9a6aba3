"""Image files of 3D volumes (NRRD, NIfTI, MHA, ...), read and written through MRML storage nodes (slicer-core
has no ``slicer.util.loadVolume``), and written atomically (:func:`atomic_write`).

NIfTI files are checked before they are read (:func:`nifti_nonfinite_values`): truncated ones are refused,
and their NaN / Inf voxels, which the storage node reads as 0, are put back. A 4D NIfTI file is refused as a
volume (``IVIMEstimatorLib.diffusion_series`` reads series).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .geometry import VolumeGeometry
from .mrml_nodes import describe_node, new_volume_node, volume_to_array

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def file_suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def check_writable_suffix(path: Path) -> None:
    if file_suffix(path) not in VOLUME_SUFFIXES:
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
    if not 1 <= rank <= 7 or np.any(dims[1 : rank + 1] < 1) or offset < 0:
        raise InputError(f"{path.name} has an invalid NIfTI header (dimensions {dims[: rank + 1].tolist()})")
    if code not in NIFTI_DTYPES:
        raise InputError(f"{path.name} has NIfTI datatype {code}, not a real voxel type this reader supports")
    return tuple(int(d) for d in dims[1 : rank + 1]), np.dtype(order + NIFTI_DTYPES[code]), offset


def nifti_shape(path: str | os.PathLike) -> tuple[int, ...] | None:
    """The dimensions of a ``.nii`` / ``.nii.gz`` file from its header; None for other formats."""
    import gzip

    path = Path(path)
    if file_suffix(path) not in (".nii", ".nii.gz"):
        return None
    with (gzip.open if file_suffix(path) == ".nii.gz" else open)(path, "rb") as stream:
        return _nifti_layout(stream.read(540), path)[0]


def nifti_nonfinite_values(path: str | os.PathLike) -> NonfiniteVoxels | None:
    """Check a ``.nii`` / ``.nii.gz`` file's voxel data against its header; None for other formats.

    Slicer's reader (ITK) fills the part missing from a truncated file with zeros and reads NaN / Inf as 0,
    which would give plausible but wrong maps. So the data are streamed (``.gz`` decompressed on the fly) and
    counted: fewer bytes than the header's shape x voxel size, or a damaged compressed stream, is an
    InputError. Returns the NaN / Inf voxels of a floating-point file (None when there are none), for the
    caller to put back."""
    import gzip
    import zlib

    path = Path(path)
    if file_suffix(path) not in (".nii", ".nii.gz"):
        return None
    indices, values, seen = [], [], 0  # seen: data bytes checked
    try:
        with (gzip.open if file_suffix(path) == ".nii.gz" else open)(path, "rb") as stream:
            header = stream.read(540)
            shape, dtype, offset = _nifti_layout(header, path)
            voxels = int(np.prod(shape, dtype=np.int64))
            total = voxels * dtype.itemsize
            stream.read(max(0, offset - len(header)))  # the rest of the header: extensions
            carry = header[offset : offset + total]  # data bytes read but not yet checked
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
        raise InputError(
            f"{path.name} is truncated: it holds {seen:,} of the {total:,} bytes of voxel data its header "
            f"gives ({grid} voxels of {dtype.itemsize} bytes)"
        )
    found = np.concatenate(indices) if indices else np.empty(0, np.int64)
    return NonfiniteVoxels(voxels, found, np.concatenate(values)) if found.size else None


def restore_nonfinite(array: np.ndarray, nonfinite: NonfiniteVoxels | None, path: Path) -> np.ndarray:
    """``array`` (read by Slicer from ``path``) with the file's NaN / Inf voxels put back."""
    if nonfinite is None:
        return array
    if array.size != nonfinite.voxels:
        raise InputError(
            f"{path.name} holds NaN / Inf voxels, and its {nonfinite.voxels} values were read as "
            f"{array.size}: cannot tell which voxels they are"
        )
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
    return restore_nonfinite(array, nonfinite, path), geometry


def read_volume(scene: Any, path: str | os.PathLike, name: str | None = None) -> Any:
    """Read a 3D image file into a new scalar volume node of ``scene``."""
    array, geometry = read_volume_array(path)
    return new_volume_node(scene, array, geometry, name or file_stem(Path(path)))


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
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
    """Write a volume node to ``path`` (format from the extension), atomically (:func:`atomic_write`); the node
    is not modified."""
    import slicer

    path = Path(path)
    check_writable_suffix(path)
    if node is None or not node.IsA("vtkMRMLVolumeNode") or node.GetImageData() is None:
        raise InputError(f"cannot write {describe_node(node)}: not a volume with image data")
    with atomic_write(path) as temporary:
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(temporary))
        storage.SetUseCompression(1)
        if not storage.WriteData(node):
            raise OSError(f"writing {path} failed")
    return path


def write_volume_array(array: np.ndarray, geometry: VolumeGeometry, path: str | os.PathLike) -> Path:
    """Write ``array[k, j, i]`` with ``geometry`` to an image file (through a scratch scene), atomically."""
    import slicer

    return write_volume(new_volume_node(slicer.vtkMRMLScene(), array, geometry, file_stem(Path(path))), path)


def file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".seq.nrrd", ".seq.nhdr", ".nii.gz") + VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
