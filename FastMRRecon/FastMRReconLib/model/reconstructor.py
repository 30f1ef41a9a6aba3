"""Apply a trained reconstruction network to magnitude images of any size and intensity scale.

``Reconstructor.load(path=None)`` (None = the shipped default model) then ``.reconstruct(image)`` for a
float array ``(H, W)`` or ``(slices, H, W)``; the result has the same shape and intensity scale.

Intensity normalisation (also used in training): each slice is divided by its *scale*, the 99th
percentile of its pixels, and multiplied back afterwards; slices whose scale is below 5% of the volume's
(nearly empty slices at the edge of a volume) use 5% of the volume's scale instead, so their noise is not
blown up. A non-negative input gives a non-negative output. Slices are processed in batches; progress is reported
and cancellation honoured between batches.

Noise (networks with ``NetworkConfig.noise_input``): each slice's noise SD map is measured from the image
(``noise_level.noise_maps``) unless the user gives one SD for the whole volume (``noise_sd``, the image's
units, > 0); the network is told that map times ``strength`` (``STRENGTHS``: 0 tells it the image is
noise-free, 1 the measured level, up to ``MAX_STRENGTH``), normalised like the image. The change map
(``return_change``) is |output - input| / the measured (or given) noise SD per pixel: where the network
departed from the measured image by more than its noise. A volume whose median slice reads below
``LOW_SNR`` (object mean / noise SD) is mostly noise: reconstructed, with a warning in the log. The measured
noise includes the image's own, which no estimator can tell from acquisition noise, so a noise-aware
network's change is kept according to the SNR it is told (``SnrGate``, ``SNR_GATE``): fully at low SNR,
not at all at high SNR, where a good image is returned unchanged.

Batch size (``default_batch_size``): on a GPU, 8 slices; on the CPU, as many slices as hold
``CPU_BATCH_PIXELS`` pixels (at least one): the activations of larger batches no longer fit the processor's
caches, and each slice takes longer (timings: ``docs/benchmarks/recon.md``, "Speed and memory" and
"History").

Precision (``FastMRICommon.device.select_precision``): "auto" runs the network in bfloat16 on a CPU with
native bfloat16 instructions, float32 elsewhere (time and the change of the output:
``docs/benchmarks/recon_do_no_harm.md``).

Shapes and units: images ``(H, W)`` or ``(slices, H, W)``, real and finite, magnitude (``check_magnitude``),
at least the network's minimum size in-plane (32 pixels for the shipped models); outputs float32 of the same
shape on the input's intensity scale; noise SDs in the image's units; change maps in noise SDs. Bad input
raises InputError; a bad model file ModelFileError.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np

from FastMRICommon.device import DeviceLike, select_device, select_precision
from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.model_files import ModelFile, load_model_file, load_shipped_model
from FastMRReconLib.kspace.simulate import check_magnitude, object_mean
from FastMRReconLib.model.network import NetworkConfig, ReconstructionNetwork
from FastMRReconLib.model.noise_level import noise_maps
from FastMRReconLib.model.settings import MAX_STRENGTH, STRENGTHS, check_noise_settings  # noqa: F401 (re-exported)

log = logging.getLogger("fastmrrecon")

MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models" / "FastMRRecon"
DEFAULT_MODEL = "fastmrrecon_head_noiseaware.pt"
#: The model shipped before the noise-aware one (no noise input): kept for comparison and as its warm start.
PREVIOUS_MODEL = "fastmrrecon_head_multicontrast.pt"
ARCHITECTURE = "resunet-fidelity"
#: Model files written before ``max_channels`` existed have no width limit.
REGISTRY = {ARCHITECTURE: lambda **config: ReconstructionNetwork(NetworkConfig(**{"max_channels": None, **config}))}
#: Largest number of pixels accepted (e.g. 1024 x 1024 x 256); beyond it, split the volume.
MAX_PIXELS = 1024 * 1024 * 256
#: Pixels per batch on the CPU (module docstring): two 256 x 256 slices, eight 128 x 128.
CPU_BATCH_PIXELS = 2 * 256 * 256
#: Slices per batch on a GPU.
GPU_BATCH_SLICES = 8
#: Median slice SNR (object mean / noise SD) below which the log warns that the image is mostly noise.
LOW_SNR = 3.0


@dataclass(frozen=True)
class SnrGate:
    """How much of the network's change a pixel keeps, from the SNR the network is told (the slice's object
    mean over strength x noise SD; ``per`` "slice": the slice's median noise SD, "pixel": the noise map
    there): all of it at SNR <= ``full``, none at SNR >= ``none``, log-linear between (module docstring)."""

    full: float
    none: float
    per: str = "slice"

    def told_snr(self, levels: np.ndarray, sigma: np.ndarray, strength: float) -> np.ndarray:
        """SNR per pixel of ``sigma [slices, H, W]`` for the slices' object ``levels`` (inf at strength 0)."""
        noise = np.median(sigma, axis=(1, 2), keepdims=True) if self.per == "slice" else sigma
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.broadcast_to(levels[:, None, None] / (strength * noise), sigma.shape)

    def weights(self, snr: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.log(self.none / snr) / np.log(self.none / self.full)
        return np.clip(np.nan_to_num(weight, nan=0.0), 0.0, 1.0).astype(np.float32)


#: The gate of noise-aware networks (chosen on training images: ``benchmarks/calibrate_snr_gate.py``).
SNR_GATE = SnrGate(full=15.0, none=30.0, per="slice")


def default_batch_size(device: DeviceLike, slice_shape: tuple[int, int]) -> int:
    """Slices per batch for ``device`` and in-plane ``slice_shape`` (module docstring)."""
    if str(device).startswith("cuda"):
        return GPU_BATCH_SLICES
    return max(1, CPU_BATCH_PIXELS // (slice_shape[0] * slice_shape[1]))


def slice_scales(images: np.ndarray) -> np.ndarray:
    """Per-slice normalisation scales of ``images [slices, H, W]`` (module docstring)."""
    scales = np.percentile(images.reshape(images.shape[0], -1), 99, axis=1)
    volume_scale = float(np.percentile(images, 99))
    return np.maximum(scales, 0.05 * volume_scale).astype(np.float32)


def object_levels(volume: np.ndarray) -> np.ndarray:
    """``simulate.object_mean`` of each slice (the SNR reference); NaN for an empty slice."""
    return np.array([object_mean(image) if image.any() else np.nan for image in volume], dtype=np.float64)


def check_image(image: np.ndarray, min_size: int) -> np.ndarray:
    """The image as float32 ``[slices, H, W]``, or a one-line InputError for what cannot be reconstructed:
    among others a non-magnitude image or values float32 cannot carry (``simulate.check_magnitude``: minimum
    below -10% of the 99th percentile, or beyond +-1e12)."""
    array = np.asarray(image)
    if np.iscomplexobj(array):
        raise InputError("complex input: give a magnitude image (the scanner's or |complex image|)")
    if array.ndim not in (2, 3):
        raise InputError(
            f"expected a 2D image (H, W) or a volume (slices, H, W), got {array.ndim}D shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or array.dtype == bool:
        raise InputError(f"expected a numeric image, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise InputError("the image contains NaN or infinite values")
    if min(array.shape[-2:]) < min_size:
        raise InputError(f"images must be at least {min_size} x {min_size} pixels in-plane, got shape {array.shape}")
    if array.size > MAX_PIXELS:
        raise InputError(f"{array.size} pixels is more than the {MAX_PIXELS} handled at once: split the volume")
    check_magnitude(array)
    if np.ptp(array) == 0:
        raise InputError("the image is constant: there is nothing to reconstruct")
    return (array[None] if array.ndim == 2 else array).astype(np.float32)


class Reconstructor:
    """A loaded reconstruction network on a device (see the module docstring)."""

    def __init__(
        self,
        network: ReconstructionNetwork,
        device: DeviceLike = "cpu",
        metadata: dict | None = None,
        gate: SnrGate | None = SNR_GATE,
        precision: str = "auto",
    ) -> None:
        self.network = network.to(device).eval()
        self.device = device
        #: The autocast dtype of inference (None: float32), from ``precision`` (module docstring).
        self.autocast_dtype = select_precision(device, precision)
        self.metadata = metadata or {}
        #: Applied to noise-aware networks only; None keeps all of the network's change.
        self.gate = gate

    @classmethod
    def load(
        cls, path: str | os.PathLike | None = None, device: str = "auto", precision: str = "auto"
    ) -> Reconstructor:
        """The model in ``path`` (None: the shipped default, checked against its SHA-256) on ``device``
        ("auto" = CUDA when present, else CPU) computing in ``precision`` (module docstring)."""
        model: ModelFile = load_shipped_model(MODELS_DIR, DEFAULT_MODEL) if path is None else load_model_file(path)
        return cls(model.build(REGISTRY), select_device(device), model.metadata, precision=precision)

    @property
    def noise_aware(self) -> bool:
        """Whether the network takes the noise map (module docstring)."""
        return bool(getattr(self.network.config, "noise_input", False))

    def noise_sd_maps(
        self, volume: np.ndarray, noise_sd: float | None = None, levels: np.ndarray | None = None
    ) -> np.ndarray:
        """Noise SD per pixel of ``volume [slices, H, W]``: measured, or ``noise_sd`` everywhere; ``levels``:
        the slices' ``object_levels`` when the caller has them."""
        if noise_sd is not None:
            return np.full(volume.shape, noise_sd, dtype=np.float32)
        maps = noise_maps(volume)
        levels = (object_levels(volume) if levels is None else levels) / np.median(maps, axis=(1, 2))
        median_snr = float(np.nanmedian(levels)) if np.isfinite(levels).any() else float("inf")
        if median_snr < LOW_SNR:
            log.warning(
                "the image is mostly noise (SNR about %.1f): the reconstruction cannot recover much", median_snr
            )
        return maps

    @overload
    def reconstruct(
        self,
        image: np.ndarray,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        noise_sd: float | None = None,
        strength: float = 1.0,
        return_change: Literal[False] = False,
    ) -> np.ndarray: ...

    @overload
    def reconstruct(
        self,
        image: np.ndarray,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        noise_sd: float | None = None,
        strength: float = 1.0,
        *,
        return_change: Literal[True],
    ) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def reconstruct(
        self,
        image: np.ndarray,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        noise_sd: float | None = None,
        strength: float = 1.0,
        return_change: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...

    def reconstruct(
        self,
        image: np.ndarray,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
        noise_sd: float | None = None,
        strength: float = 1.0,
        return_change: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The restored image, same shape and intensity scale as ``image`` (module docstring), float32;
        ``batch_size`` slices at a time (None: ``default_batch_size``). ``noise_sd`` (None: measured) and
        ``strength`` set the noise level the network is told; with ``return_change`` also the change map
        (same shape, in noise SDs)."""
        import torch

        check_noise_settings(noise_sd, strength)
        volume = check_image(image, self.network.min_size)
        batch_size = batch_size or default_batch_size(self.device, volume.shape[1:])
        if batch_size < 1:
            raise InputError(f"the batch size must be at least 1, got {batch_size}")
        scales = slice_scales(volume)
        sigma: np.ndarray | None = None  # noise SD maps: what a noise-aware network is told, the change map's unit
        told_sd: np.ndarray | None = None
        weights: np.ndarray | None = None
        if self.noise_aware or return_change:
            levels = object_levels(volume)
            sigma = self.noise_sd_maps(volume, noise_sd, levels)
            if self.noise_aware:
                told_sd = strength * sigma
                if self.gate is not None:
                    weights = self.gate.weights(self.gate.told_snr(levels, sigma, strength))
        result = np.empty_like(volume)
        with torch.inference_mode():
            for start in range(0, volume.shape[0], batch_size):
                raise_if_cancelled(cancel)
                stop = min(start + batch_size, volume.shape[0])
                scale = scales[start:stop, None, None]
                batch = torch.from_numpy(volume[start:stop] / scale)[:, None].to(self.device)
                told = None
                if told_sd is not None:
                    told = torch.from_numpy(told_sd[start:stop] / scale)[:, None].to(self.device)
                with torch.autocast(
                    torch.device(self.device).type,
                    dtype=self.autocast_dtype or torch.float32,
                    enabled=self.autocast_dtype is not None,
                ):
                    final = self.network(batch, told)[1]
                final = final[:, 0].float().cpu().numpy() * scale
                if weights is not None:
                    final = volume[start:stop] + weights[start:stop] * (final - volume[start:stop])
                result[start:stop] = final
                report(progress, stop / volume.shape[0], f"reconstructed slice {stop}/{volume.shape[0]}")
        if volume.min() >= 0:  # a magnitude image stays non-negative
            np.maximum(result, 0, out=result)
        if not return_change:
            return result[0] if np.ndim(image) == 2 else result
        assert sigma is not None  # computed above whenever return_change
        change = np.abs(result - volume) / sigma
        return (result[0], change[0]) if np.ndim(image) == 2 else (result, change)
