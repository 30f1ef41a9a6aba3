"""Apply a trained reconstruction network to magnitude images of any size and intensity scale.

``Reconstructor.load(path=None)`` (None = the shipped default model) then ``.reconstruct(image)`` for a
float array ``(H, W)`` or ``(slices, H, W)``; the result has the same shape and intensity scale.

Intensity normalisation (also used in training): each slice is divided by its *scale*, the 99th
percentile of its pixels, and multiplied back afterwards; slices whose scale is below 5% of the volume's
(nearly empty slices at the edge of a volume) use 5% of the volume's scale instead, so their noise is not
blown up. A non-negative input gives a non-negative output. Slices are processed in batches; progress is reported and cancellation honoured between batches.

Batch size (``default_batch_size``): on a GPU, 8 slices; on the CPU, as many slices as hold
``CPU_BATCH_PIXELS`` pixels (at least one): the activations of larger batches no longer fit the processor's
caches, and each slice takes longer (256 x 256 slices, 2 cores: about 0.06 s each in batches of 1 or 2,
0.11 s in batches of 8; ``docs/benchmarks/recon.md`` has the benchmark).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from FastMRICommon.device import select_device
from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.model_files import ModelFile, load_model_file, load_shipped_model

from .network import NetworkConfig, ReconstructionNetwork

MODELS_DIR = Path(__file__).resolve().parents[1] / "Resources" / "Models"
DEFAULT_MODEL = "fastmrrecon_head_multicontrast.pt"
ARCHITECTURE = "resunet-fidelity"
#: Model files written before ``max_channels`` existed have no width limit.
REGISTRY = {ARCHITECTURE: lambda **config: ReconstructionNetwork(NetworkConfig(**{"max_channels": None, **config}))}
#: Largest number of pixels accepted (e.g. 1024 x 1024 x 256); beyond it, split the volume.
MAX_PIXELS = 1024 * 1024 * 256
#: Pixels per batch on the CPU (module docstring): two 256 x 256 slices, eight 128 x 128.
CPU_BATCH_PIXELS = 2 * 256 * 256
#: Slices per batch on a GPU.
GPU_BATCH_SLICES = 8


def default_batch_size(device: str, slice_shape: tuple[int, int]) -> int:
    """Slices per batch for ``device`` and in-plane ``slice_shape`` (module docstring)."""
    if str(device).startswith("cuda"):
        return GPU_BATCH_SLICES
    return max(1, CPU_BATCH_PIXELS // (slice_shape[0] * slice_shape[1]))


def slice_scales(images: np.ndarray) -> np.ndarray:
    """Per-slice normalisation scales of ``images [slices, H, W]`` (module docstring)."""
    scales = np.percentile(images.reshape(images.shape[0], -1), 99, axis=1)
    volume_scale = float(np.percentile(images, 99))
    return np.maximum(scales, 0.05 * volume_scale).astype(np.float32)


def check_image(image: np.ndarray, min_size: int) -> np.ndarray:
    """The image as float32 ``[slices, H, W]``, or a one-line InputError for what cannot be reconstructed."""
    array = np.asarray(image)
    if np.iscomplexobj(array):
        raise InputError("complex input: give a magnitude image (the scanner's or |complex image|)")
    if array.ndim not in (2, 3):
        raise InputError(f"expected a 2D image (H, W) or a volume (slices, H, W), got {array.ndim}D shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or array.dtype == bool:
        raise InputError(f"expected a numeric image, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise InputError("the image contains NaN or infinite values")
    if min(array.shape[-2:]) < min_size:
        raise InputError(f"images must be at least {min_size} x {min_size} pixels in-plane, got shape {array.shape}")
    if array.size > MAX_PIXELS:
        raise InputError(f"{array.size} pixels is more than the {MAX_PIXELS} handled at once: split the volume")
    if np.ptp(array) == 0:
        raise InputError("the image is constant: there is nothing to reconstruct")
    return (array[None] if array.ndim == 2 else array).astype(np.float32)


class Reconstructor:
    """A loaded reconstruction network on a device (see the module docstring)."""

    def __init__(self, network: ReconstructionNetwork, device: str = "cpu", metadata: Optional[dict] = None) -> None:
        self.network = network.to(device).eval()
        self.device = device
        self.metadata = metadata or {}

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str = "auto") -> "Reconstructor":
        """The model in ``path`` (None: the shipped default, checked against its SHA-256) on ``device``
        ("auto" = CUDA when present, else CPU)."""
        model: ModelFile = load_shipped_model(MODELS_DIR, DEFAULT_MODEL) if path is None else load_model_file(path)
        return cls(model.build(REGISTRY), select_device(device), model.metadata)

    def reconstruct(self, image: np.ndarray, batch_size: Optional[int] = None,
                    progress: Optional[ProgressCallback] = None, cancel: Optional[CancelCheck] = None) -> np.ndarray:
        """The restored image, same shape and intensity scale as ``image`` (module docstring), float32;
        ``batch_size`` slices at a time (None: ``default_batch_size``)."""
        import torch

        volume = check_image(image, self.network.min_size)
        batch_size = batch_size or default_batch_size(self.device, volume.shape[1:])
        scales = slice_scales(volume)
        result = np.empty_like(volume)
        with torch.inference_mode():
            for start in range(0, volume.shape[0], batch_size):
                raise_if_cancelled(cancel)
                stop = min(start + batch_size, volume.shape[0])
                batch = torch.from_numpy(volume[start:stop] / scales[start:stop, None, None])[:, None].to(self.device)
                final = self.network(batch)[1][:, 0].float().cpu().numpy()
                result[start:stop] = final * scales[start:stop, None, None]
                report(progress, stop / volume.shape[0], f"reconstructed slice {stop}/{volume.shape[0]}")
        if volume.min() >= 0:  # a magnitude image stays non-negative
            np.maximum(result, 0, out=result)
        return result[0] if np.ndim(image) == 2 else result
