"""Reconstruct raw multi-coil Cartesian k-space with the unrolled network (``model.unrolled``).

``KspaceReconstructor.load(path=None)`` (None: the shipped model, checked against its SHA-256), then
``.reconstruct(kspace, mask=None)`` for complex k-space ``[coils, ky, kx]`` or ``[slices, coils, ky, kx]``
(``kspace.raw_kspace`` conventions). Each slice, as in training (``training.kspace_examples``): the acquired
samples (the mask, or the non-zero samples), coil maps from the calibration block (``raw_kspace.box_coil_maps``),
the noise SD measured from the k-space edges (``raw_kspace.kspace_noise_sd``), the CG-SENSE start, the network.
Then a final data-consistency step (``final_consistency``): ``argmin ||A x - y||² + eps ||x - x_net||²`` with
``eps = clip(FINAL_CONSISTENCY_GAIN x noise SD, FINAL_CONSISTENCY_RANGE)`` (normalised units), so that the
acquired samples are followed closely when the data are clean and the network's denoising is kept when they are
noisy: the network alone, trained on simulated objects, moved clean real k-space below CG-SENSE (smoothing real
texture); the gain was chosen on the benchmark's real scan and simulated held-out slices
(``docs/benchmarks/recon_kspace.md``). Returns the complex image ``[slices, ky, kx]`` (``complex_output``) or
its magnitude, float32, in the units of the data (the orthonormal FFT's image scale). Progress is reported and
cancellation honoured between slices.
Denormal floats are flushed to zero (``torch.set_flush_denormal``): conjugate gradients on noise-free data
otherwise reach them and run tens of times slower.
"""

from __future__ import annotations

import os

import numpy as np

from FastMRICommon.device import DeviceLike, select_device
from FastMRICommon.errors import CancelCheck, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.model_files import ModelFile, load_model_file, load_shipped_model
from FastMRReconLib.kspace.raw_kspace import (
    acquired_mask,
    box_coil_maps,
    calibration_box,
    check_kspace,
    kspace_noise_sd,
)
from FastMRReconLib.kspace.sense import DEFAULT_REGULARIZATION
from FastMRReconLib.model.reconstructor import MODELS_DIR
from FastMRReconLib.model.unrolled import UnrolledConfig, UnrolledNetwork, normalised_batch

KSPACE_MODEL = "fastmrrecon_kspace_unrolled.pt"
KSPACE_ARCHITECTURE = "unrolled-modl"
REGISTRY = {KSPACE_ARCHITECTURE: lambda **config: UnrolledNetwork(UnrolledConfig(**config))}
#: The final data-consistency weight per unit of normalised noise SD, its range, and its CG steps (docstring).
FINAL_CONSISTENCY_GAIN = 3.0
FINAL_CONSISTENCY_RANGE = (0.01, 1.0)
FINAL_CONSISTENCY_ITERATIONS = 10


def final_consistency(image, kspace, maps, mask, noise):
    """``argmin_x ||A x - y||² + eps ||x - image||²`` (module docstring) for a normalised batch (torch)."""
    import torch

    from FastMRReconLib.model.unrolled import SenseOperator, conjugate_gradient

    operator = SenseOperator(maps, mask)
    eps = torch.clamp(FINAL_CONSISTENCY_GAIN * noise, *FINAL_CONSISTENCY_RANGE)[:, None, None]
    return conjugate_gradient(
        operator, operator.adjoint(kspace) + eps * image, eps, image, FINAL_CONSISTENCY_ITERATIONS
    )


class KspaceReconstructor:
    """A loaded unrolled network on a device (module docstring)."""

    def __init__(self, network: UnrolledNetwork, device: DeviceLike = "cpu", metadata: dict | None = None) -> None:
        self.network = network.to(device).eval()
        self.device = device
        self.metadata = metadata or {}

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str = "auto") -> KspaceReconstructor:
        """The model in ``path`` (None: the shipped one) on ``device`` ("auto" = CUDA when present)."""
        model: ModelFile = load_shipped_model(MODELS_DIR, KSPACE_MODEL) if path is None else load_model_file(path)
        return cls(model.build(REGISTRY), select_device(device), model.metadata)

    def reconstruct(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        complex_output: bool = False,
    ) -> np.ndarray:
        """The image of every slice of ``kspace`` (module docstring); ``mask``: bool ``[ky, kx]``, ``[slices, ky,
        kx]``, or 1D over kx (fastMRI) or ky; None: the non-zero samples."""
        import torch

        torch.set_flush_denormal(True)
        data = check_kspace(kspace)
        single = np.ndim(kspace) == 3
        masks = None if mask is None else np.asarray(mask)
        result = np.empty((data.shape[0],) + data.shape[2:], np.complex64)
        with torch.inference_mode():
            for index, slice_kspace in enumerate(data):
                raise_if_cancelled(cancel)
                slice_mask = None if masks is None else (masks[index] if masks.ndim == 3 else masks)
                acquired = acquired_mask(slice_kspace, slice_mask)
                slice_kspace = slice_kspace * acquired
                maps = box_coil_maps(slice_kspace, calibration_box(acquired))
                tensors = [
                    torch.from_numpy(np.ascontiguousarray(array))[None].to(self.device)
                    for array in (slice_kspace, maps, acquired.astype(np.float32))
                ]
                noise = torch.tensor([kspace_noise_sd(slice_kspace, acquired)], dtype=torch.float32, device=self.device)
                batch = normalised_batch(tensors[0], tensors[1], tensors[2], noise, DEFAULT_REGULARIZATION)
                image = self.network(batch["start"], batch["kspace"], tensors[1], tensors[2], batch["noise"])
                image = final_consistency(image, batch["kspace"], tensors[1], tensors[2], batch["noise"])
                result[index] = (image[0] * batch["scale"][0]).cpu().numpy()
                report(progress, (index + 1) / data.shape[0], f"reconstructed slice {index + 1}/{data.shape[0]}")
        output = result if complex_output else np.abs(result).astype(np.float32)
        return output[0] if single else output
