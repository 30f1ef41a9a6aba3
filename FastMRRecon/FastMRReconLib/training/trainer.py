"""Training the reconstruction network on synthesised pairs (``FastMRReconLib.training.pairs``).

Adam (lr 1e-4), 2D slices, the loss L = lambda ||x - x_hat||_1 - SSIM(x, x_hat) at
each stage's output (deep supervision: stage-1 U-Net image and final image), x the AV=2 reference. Both
images of a pair are divided by the input's normalisation scale (``reconstructor.slice_scales``), exactly
as at inference. Each step takes ``batch_size`` random ``patch`` x ``patch`` crops with random flips and
transposes (an image smaller than the patch is placed in a zero canvas: air); which pairs and crops is
fixed by (seed, step), so a resumed run continues exactly as an uninterrupted one would (a run may also be
resumed with more steps). A checkpoint (weights, optimiser, step, history) is written every
``checkpoint_every`` steps and at the end; validation PSNR/SSIM (``metrics``) on whole validation images
every ``validate_every`` steps.

Distributed (``torchrun``, ``torch.distributed`` initialised by the caller, e.g. ``fastmrrecon train``):
the network is wrapped in ``DistributedDataParallel``; each process draws its own batches (rank 0 the same
as a single process), so the effective batch is ``batch_size`` x world size; only rank 0 validates,
reports and writes the checkpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from FastMRICommon.device import DeviceLike
from FastMRICommon.errors import CancelCheck, InputError, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.model_files import ModelFile, load_model_file, save_model_file
from FastMRReconLib.metrics import psnr, ssim, ssim_torch
from FastMRReconLib.model.network import NetworkConfig, ReconstructionNetwork, widened_state
from FastMRReconLib.model.noise_level import noise_maps
from FastMRReconLib.model.reconstructor import ARCHITECTURE, Reconstructor, slice_scales
from FastMRReconLib.training.pairs import SlicePair


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings (module docstring); ``l1_weight`` is lambda."""

    steps: int = 4000
    batch_size: int = 12
    patch: int = 128
    learning_rate: float = 1e-4
    l1_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    validate_every: int = 500
    network: NetworkConfig = field(default_factory=NetworkConfig)
    #: A model file whose weights start the network (``network.widened_state``: a network without noise
    #: input may start a noise-aware one); None: random initialisation.
    warm_start: str | None = None


@dataclass
class TrainingResult:
    """The trained network, the loss per step and the validation scores (step, PSNR dB, SSIM)."""

    network: ReconstructionNetwork
    losses: list[float]
    validation: list[dict]
    seconds: float


def _normalised(pairs: Sequence[SlicePair]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(input, reference, the input's measured noise SD map), each divided by the input's scale."""
    out = []
    for pair in pairs:
        scale = slice_scales(pair.input[None])[0]
        out.append((pair.input / scale, pair.reference / scale, noise_maps(pair.input[None])[0] / scale))
    return out


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of an initialised ``torch.distributed`` run; (0, 1) otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _batch(
    pairs: Sequence[tuple[np.ndarray, ...]], config: TrainingConfig, step: int, rank: int = 0
) -> tuple[np.ndarray, ...]:
    """(inputs, references, noise maps), each ``[batch, 1, patch, patch]`` float32."""
    rng = np.random.default_rng([config.seed, step] + ([rank] if rank else []))
    stacks: tuple[list, ...] = tuple([] for _ in pairs[0])
    for index in rng.integers(len(pairs), size=config.batch_size):
        images = pairs[index]
        short = [(0, max(0, config.patch - n)) for n in images[0].shape]
        if any(pad for _, pad in short):  # a small image sits in a zero (air) canvas of the patch size
            images = tuple(np.pad(image, short) for image in images)
        rows = int(rng.integers(images[0].shape[0] - config.patch + 1))
        columns = int(rng.integers(images[0].shape[1] - config.patch + 1))
        crop = (slice(rows, rows + config.patch), slice(columns, columns + config.patch))
        patches = [image[crop] for image in images]
        if rng.random() < 0.5:
            patches = [patch[::-1] for patch in patches]
        if rng.random() < 0.5:
            patches = [patch[:, ::-1] for patch in patches]
        if rng.random() < 0.5:
            patches = [patch.T for patch in patches]
        for stack, patch in zip(stacks, patches):
            stack.append(patch)
    return tuple(np.stack(stack)[:, None].astype(np.float32) for stack in stacks)


def stage_loss(output, reference, l1_weight: float):
    """lambda * L1 - SSIM of one stage's output (batch mean); SSIM's data range = each reference's max."""
    import torch

    data_range = torch.clamp(reference.amax(dim=(1, 2, 3)), min=1e-3)
    return l1_weight * torch.mean(torch.abs(output - reference)) - ssim_torch(output, reference, data_range).mean()


def scores_by_contrast(reconstructor: Reconstructor, pairs: Sequence[SlicePair]) -> dict:
    """Mean PSNR / SSIM (``metrics``) of the input and of the output against the reference, per contrast
    and over all pairs ("all"), with the number of pairs ("slices")."""
    table: dict = {}
    for pair in pairs:
        output = reconstructor.reconstruct(pair.input)
        for key in (pair.contrast, "all"):
            entry = table.setdefault(key, {"input_psnr": [], "input_ssim": [], "psnr": [], "ssim": []})
            entry["input_psnr"].append(psnr(pair.input, pair.reference))
            entry["input_ssim"].append(ssim(pair.input, pair.reference))
            entry["psnr"].append(psnr(output, pair.reference))
            entry["ssim"].append(ssim(output, pair.reference))
    return {
        key: {name: float(np.mean(values)) for name, values in entry.items()} | {"slices": len(entry["psnr"])}
        for key, entry in table.items()
    }


def validate(network: ReconstructionNetwork, pairs: Sequence[SlicePair], device: DeviceLike) -> dict:
    """Mean PSNR/SSIM of the network's output and of its input over all ``pairs``; leaves the network in
    training mode."""
    overall = scores_by_contrast(Reconstructor(network, device), pairs)["all"]
    network.train()
    return {key: value for key, value in overall.items() if key != "slices"}


def train(
    pairs: Sequence[SlicePair],
    config: TrainingConfig = TrainingConfig(),
    validation: Sequence[SlicePair] = (),
    device: DeviceLike = "cpu",
    checkpoint: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> TrainingResult:
    """Train a network on ``pairs``; resume from ``checkpoint`` when that file exists (module docstring)."""
    import torch

    if not pairs:
        raise InputError("no training pairs")
    torch.manual_seed(config.seed)
    rank, world = distributed_rank()
    network = ReconstructionNetwork(config.network)
    if config.warm_start:
        network.load_state_dict(widened_state(load_model_file(config.warm_start).state_dict, network))
    network = network.to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    losses, history, start, seconds = [], [], 0, 0.0
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if _resumable(state["config"]) != _resumable(_jsonable(config)):
            raise InputError(f"checkpoint {checkpoint} was written with other settings; remove it or match them")
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        start, losses, history = state["step"], list(state["losses"]), list(state["validation"])
        seconds = state["seconds"]
    model: torch.nn.Module = network  # what is trained: the network, or its distributed wrapper
    if world > 1:  # every process starts from rank 0's weights; gradients are averaged
        on_gpu = torch.device(device).type == "cuda"
        model = torch.nn.parallel.DistributedDataParallel(network, device_ids=[device] if on_gpu else None)
    data = _normalised(pairs)
    network.train()
    began = time.perf_counter() - seconds
    for step in range(start, config.steps):
        raise_if_cancelled(cancel)
        inputs, references, noise = (torch.from_numpy(array).to(device) for array in _batch(data, config, step, rank))
        restored, final = model(inputs, noise if config.network.noise_input else None)
        loss = stage_loss(restored, references, config.l1_weight) + stage_loss(final, references, config.l1_weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        done = step + 1
        if rank:
            continue
        if validation and (done % config.validate_every == 0 or done == config.steps):
            history.append({"step": done, **validate(network, validation, device)})
        if checkpoint is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            _save_checkpoint(checkpoint, network, optimiser, config, done, losses, history, time.perf_counter() - began)
        report(
            progress,
            done / config.steps,
            f"step {done}/{config.steps}: loss {np.mean(losses[-50:]):.4f}"
            + (f", validation PSNR {history[-1]['psnr']:.2f} dB SSIM {history[-1]['ssim']:.4f}" if history else ""),
        )
    network.eval()
    return TrainingResult(network, losses, history, time.perf_counter() - began)


def _jsonable(config: TrainingConfig) -> dict:
    return asdict(config)


def _resumable(settings: dict) -> dict:
    """The settings a resumed run must share with its checkpoint (all but the number of steps, and where the
    warm start's weights came from: they only matter at step 0)."""
    return {
        key: value
        for key, value in settings.items()
        if key not in ("steps", "checkpoint_every", "validate_every", "warm_start")
    }


def _save_checkpoint(
    path: Path,
    network,
    optimiser,
    config: TrainingConfig,
    step: int,
    losses: list[float],
    history: list[dict],
    seconds: float,
) -> None:
    import torch

    temporary = path.with_suffix(path.suffix + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "network": network.state_dict(),
            "optimiser": optimiser.state_dict(),
            "config": _jsonable(config),
            "step": step,
            "losses": losses,
            "validation": history,
            "seconds": seconds,
        },
        temporary,
    )
    os.replace(temporary, path)


def model_file(result: TrainingResult, config: TrainingConfig, metadata: dict) -> ModelFile:
    """The trained network as a model file with its training settings and ``metadata``."""
    return ModelFile(
        ARCHITECTURE,
        config.network.as_dict(),
        result.network.state_dict(),
        {
            "training": _jsonable(config),
            "training_seconds": result.seconds,
            "validation": result.validation,
            **metadata,
        },
    )


def save_trained(path: str | os.PathLike, result: TrainingResult, config: TrainingConfig, metadata: dict) -> str:
    """Write the model file; return its SHA-256."""
    return save_model_file(path, model_file(result, config, metadata))
