"""Training of the unrolled k-space network (``model.unrolled``) on examples simulated on the fly
(``training.kspace_examples``).

Each step draws ``batch_size`` objects and simulates one acquisition of each (a new one every time: the network
never sees the same scan twice). Loss: ``l1_weight`` x the mean |complex error| + (1 - SSIM) of the magnitudes
(``metrics.ssim_torch``, data range 1 after normalisation). With ``noise_weighted``, each example's L1 term is
weighted by ``NOISE_WEIGHT_REFERENCE / max(noise SD, NOISE_WEIGHT_FLOOR)`` (normalised units,
``noise_loss_weights``): the achievable error grows with the noise, so unweighted the noisiest examples dominate
the loss and set the shared weights (``mu`` above all) for themselves, at the cost of clean data. Adam with a cosine
decay of the learning rate to ``lr / 20``; the data-consistency weights (``mu``) learn ``mu_lr_gain`` times faster
(a handful of scalars, whose gradients are small next to the regulariser's). A checkpoint (weights, optimiser,
step, history) is written every ``checkpoint_every`` steps and at the end; an interrupted run resumes from it.
Validation (PSNR / SSIM of the magnitude against the target, on a fixed set of examples from held-out objects)
every ``validate_every`` steps. Threads: torch's default (one per core).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from FastMRICommon.errors import InputError
from FastMRReconLib.kspace.sense import DEFAULT_REGULARIZATION
from FastMRReconLib.metrics import psnr, ssim
from FastMRReconLib.model.unrolled import UnrolledConfig, UnrolledNetwork, normalised_batch
from FastMRReconLib.training.kspace_examples import (
    KspaceExample,
    KspaceExampleConfig,
    MaskSampler,
    simulate_example,
    stack_examples,
)

log = logging.getLogger("fastmrrecon")


@dataclass(frozen=True)
class KspaceTrainingConfig:
    """Settings of one training run (module docstring)."""

    steps: int = 3000
    batch_size: int = 4
    lr: float = 1e-3
    l1_weight: float = 10.0
    seed: int = 0
    checkpoint_every: int = 100
    validate_every: int = 500
    network: UnrolledConfig = field(default_factory=UnrolledConfig)
    examples: KspaceExampleConfig = field(default_factory=KspaceExampleConfig)
    #: Weight each example's L1 term by its noise level (module docstring).
    noise_weighted: bool = False
    #: Learning rate of the data-consistency weights relative to ``lr``.
    mu_lr_gain: float = 1.0

    def as_dict(self) -> dict:
        return asdict(self)


#: ``noise_loss_weights``: the normalised noise SD of weight 1, and the floor below which weights stop growing.
NOISE_WEIGHT_REFERENCE, NOISE_WEIGHT_FLOOR = 0.01, 0.002


def noise_loss_weights(noise):
    """Per-example weights of the L1 term, ``[batch]``, from the normalised noise SDs (module docstring)."""
    return NOISE_WEIGHT_REFERENCE / noise.clamp(min=NOISE_WEIGHT_FLOOR)


def training_loss(output, target, noise, config: KspaceTrainingConfig):
    """The loss of a batch (module docstring): ``output`` and ``target`` complex ``[batch, rows, columns]``,
    ``noise`` the normalised noise SDs ``[batch]``."""
    from FastMRReconLib.metrics import ssim_torch

    l1 = (output - target).abs().mean(dim=(-2, -1))
    if config.noise_weighted:
        l1 = l1 * noise_loss_weights(noise)
    return config.l1_weight * l1.mean() + (1 - ssim_torch(output.abs()[:, None], target.abs()[:, None], 1.0)).mean()


@dataclass
class KspaceTrainingResult:
    network: UnrolledNetwork
    losses: list[float]
    validation: list[dict]
    seconds: float


def network_batch(examples: Sequence[KspaceExample], device) -> dict:
    """Torch tensors of a batch, normalised as at inference (``model.unrolled.normalised_batch``); the target
    is divided by the same scale."""
    import torch

    arrays = {
        key: torch.from_numpy(np.ascontiguousarray(value)).to(device) for key, value in stack_examples(examples).items()
    }
    batch = normalised_batch(
        arrays["kspace"], arrays["maps"], arrays["mask"], arrays["noise_sd"], DEFAULT_REGULARIZATION
    )
    return {
        **batch,
        "maps": arrays["maps"],
        "mask": arrays["mask"],
        "target": arrays["target"] / batch["scale"][:, None, None],
    }


def validation_examples(
    objects: Sequence[np.ndarray], count: int, seed: int, config: KspaceExampleConfig | None = None
) -> list[KspaceExample]:
    """``count`` fixed examples (seeded) from ``objects`` (``config`` None: the default examples)."""
    config = config or KspaceExampleConfig()
    rng = np.random.default_rng(seed)
    masks = MaskSampler(config.shape, config, rng)
    return [simulate_example(objects[int(rng.integers(len(objects)))], rng, masks, config) for _ in range(count)]


def evaluate(network: UnrolledNetwork, examples: Sequence[KspaceExample], device="cpu") -> dict:
    """Mean PSNR / SSIM (magnitude, over the target's object) of the CG-SENSE start and of the network."""
    import torch

    scores: dict[str, list[float]] = {"start_psnr": [], "start_ssim": [], "psnr": [], "ssim": []}
    network.eval()
    with torch.no_grad():
        for example in examples:
            batch = network_batch([example], device)
            output = network(batch["start"], batch["kspace"], batch["maps"], batch["mask"], batch["noise"])
            reference = batch["target"][0].abs().cpu().numpy()
            for prefix, image in (("start_", batch["start"][0]), ("", output[0])):
                scores[prefix + "psnr"].append(psnr(image.abs().cpu().numpy(), reference))
                scores[prefix + "ssim"].append(ssim(image.abs().cpu().numpy(), reference))
    return {key: float(np.mean(values)) for key, values in scores.items()}


def _settings(config: KspaceTrainingConfig) -> dict:
    settings = config.as_dict()
    for key in ("steps", "checkpoint_every", "validate_every"):
        settings.pop(key)
    return settings


def train(
    objects: Sequence[np.ndarray],
    config: KspaceTrainingConfig,
    validation: Sequence[KspaceExample],
    device="cpu",
    checkpoint: str | os.PathLike | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> KspaceTrainingResult:
    """Train on examples simulated from ``objects`` (magnitude images); resume from ``checkpoint`` when it exists."""
    import torch

    if not objects:
        raise InputError("no objects to simulate k-space from")
    torch.manual_seed(config.seed)
    network = UnrolledNetwork(config.network).to(device)
    groups: dict[bool, list] = {False: [], True: []}  # is it a data-consistency weight?
    for name, parameter in network.named_parameters():
        groups[name in UnrolledNetwork.DATA_WEIGHT_PARAMETERS].append(parameter)
    optimiser = torch.optim.Adam(
        [{"params": groups[False], "gain": 1.0}, {"params": groups[True], "gain": config.mu_lr_gain}], lr=config.lr
    )
    losses: list[float] = []
    history: list[dict] = []
    done, seconds = 0, 0.0
    checkpoint = Path(checkpoint) if checkpoint else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["settings"] != _settings(config):
            raise InputError(f"checkpoint {checkpoint} was written with other settings; remove it or match them")
        network.load_state_dict(state["network"])
        optimiser.load_state_dict(state["optimiser"])
        done, losses, history, seconds = state["step"], state["losses"], state["history"], state["seconds"]
        log.info("resumed from %s at step %d", checkpoint, done)
    rng = np.random.default_rng([config.seed, done])
    masks = MaskSampler(config.examples.shape, config.examples, rng)
    began = time.perf_counter() - seconds
    while done < config.steps:
        network.train()
        decay = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done / config.steps))
        for group in optimiser.param_groups:
            group["lr"] = group["gain"] * config.lr * decay
        examples = [
            simulate_example(objects[int(rng.integers(len(objects)))], rng, masks, config.examples)
            for _ in range(config.batch_size)
        ]
        batch = network_batch(examples, device)
        output = network(batch["start"], batch["kspace"], batch["maps"], batch["mask"], batch["noise"])
        loss = training_loss(output, batch["target"], batch["noise"], config)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        done += 1
        if progress is not None and done % 10 == 0:
            progress(
                done / config.steps,
                f"step {done}/{config.steps} loss {np.mean(losses[-10:]):.4f} "
                f"mu {float(network.mu):.3f} ({(time.perf_counter() - began) / max(done, 1):.2f} s/step)",
            )
        if validation and (done % config.validate_every == 0 or done == config.steps):
            history.append({"step": done, **evaluate(network, validation, device)})
            log.info("validation at step %d: %s", done, history[-1])
        if checkpoint is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            temporary = checkpoint.with_name(checkpoint.name + ".part")
            torch.save(
                {
                    "network": network.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "step": done,
                    "losses": losses,
                    "history": history,
                    "seconds": time.perf_counter() - began,
                    "settings": _settings(config),
                },
                temporary,
            )
            temporary.replace(checkpoint)
    network.eval()
    return KspaceTrainingResult(network, losses, history, time.perf_counter() - began)
