"""Coil compression: many receive coils combined into fewer virtual coils before a reconstruction, which then costs
in proportion to the virtual coils (Buehrer et al., "Array compression for MRI with large coil arrays", MRM 57(6),
2007; Huang et al., "A software channel compression technique for faster reconstruction with many channels",
MRI 26(1), 2008).

The virtual coils are the principal components of the calibration block: with ``U`` the left singular vectors of
the calibration samples ``[coils, samples]``, virtual coil ``v`` is ``sum_c conj(U[c, v]) y_c``. The combination is
unitary, so noise that is white and of equal SD in every coil keeps its SD in every virtual coil; the discarded
components carry the least calibration energy (``compression_energy`` reports the share kept).
"""

from __future__ import annotations

import numpy as np

from FastMRICommon.errors import InputError

#: The virtual coils a reconstruction compresses data with more coils to, unless told otherwise
#: (``model.kspace_reconstructor``, ``fastmrrecon reconstruct-kspace --virtual-coils``).
VIRTUAL_COILS = 8


def compression_matrix(kspace: np.ndarray, box: tuple[slice, slice], count: int) -> np.ndarray:
    """``[coils, count]`` complex: the ``count`` principal coil combinations of the calibration ``box`` (rows,
    columns) of one slice's ``kspace [coils, ky, kx]`` (module docstring), in decreasing energy."""
    if count < 1:
        raise InputError(f"virtual coils must be at least 1, got {count}")
    calibration = kspace[:, box[0], box[1]].reshape(kspace.shape[0], -1)
    vectors, _, _ = np.linalg.svd(calibration, full_matrices=False)
    return vectors[:, : min(count, kspace.shape[0])]


def compress_coils(kspace: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``kspace [coils, ky, kx]`` combined into ``matrix.shape[1]`` virtual coils, complex64 (module docstring);
    samples that were zero (not acquired) stay zero."""
    return np.tensordot(matrix.conj().T, kspace, axes=1).astype(np.complex64)


def compression_energy(kspace: np.ndarray, box: tuple[slice, slice], matrix: np.ndarray) -> float:
    """The share (0-1) of the calibration block's energy that the virtual coils of ``matrix`` keep."""
    calibration = kspace[:, box[0], box[1]].reshape(kspace.shape[0], -1)
    total = float(np.sum(np.abs(calibration) ** 2))
    return float(np.sum(np.abs(matrix.conj().T @ calibration) ** 2)) / total if total > 0 else 1.0
