"""Training the IVIM networks on synthetic data (``config.TrainingConfig``: Adam, cosine learning-rate warm-up
then cosine decay, 90/10 train/validation split; its defaults are those of the shipped networks).
The supervised loss is the sum of the three squared errors relative to each parameter's mean (f, D and D*
weigh equally); IVIM-NET's unsupervised loss is the signal residual of its own estimates. ``TrainingConfig`` can be
imported from here as well."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TypedDict

import numpy as np

from FastMRICommon.device import select_device
from FastMRICommon.errors import CancelCheck, ProgressCallback, raise_if_cancelled, report
from FastMRICommon.model_files import ModelFile, save_model_file
from IVIMEstimatorLib.fits.methods import METHOD_ARCHITECTURE
from IVIMEstimatorLib.fits.network_models import normalised_inputs
from IVIMEstimatorLib.fits.networks import REGISTRY
from IVIMEstimatorLib.fits.priors import get_prior
from IVIMEstimatorLib.training.config import TrainingConfig
from IVIMEstimatorLib.training.synthetic import synthetic_set


class TrainingHistory(TypedDict):
    """Per epoch: its number, the mean training and the validation loss, the validation NRMSE of (f, D, D*)
    and the seconds since training began."""

    epoch: list[int]
    train_loss: list[float]
    val_loss: list[float]
    val_nrmse: list[list[float]]
    seconds: list[float]


def build_network(config: TrainingConfig):
    """The untrained network for ``config`` and its constructor arguments."""
    prior = get_prior(config.prior)
    n_inputs = len(config.bvalues) - 1  # b = 0 is the normaliser, not an input
    if config.method == "scdnn":
        kwargs = dict(
            n_bvalues=n_inputs,
            dictionary_size=config.dictionary_size,
            units=config.units,
            D_range=prior.D_range,
            Dstar_range=prior.Dstar_range,
        )
    else:
        kwargs = dict(n_bvalues=n_inputs, f_range=prior.f_range, D_range=prior.D_range, Dstar_range=prior.Dstar_range)
    kwargs.update(config.architecture_options)
    architecture = METHOD_ARCHITECTURE[config.method]
    return REGISTRY[architecture](**kwargs), architecture, kwargs


def _learning_rate(config: TrainingConfig, step: int, steps_per_epoch: int) -> float:
    total, warmup = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return config.learning_rate * 0.5 * (1 - math.cos(math.pi * (step + 1) / warmup))
    progress = (step - warmup) / max(total - warmup, 1)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    config: TrainingConfig,
    out: Path | None = None,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
) -> tuple[ModelFile, TrainingHistory]:
    """Train a network for ``config`` on ``device`` ("auto": CUDA when present, else the CPU; "cpu"; "cuda"); save
    it to ``out`` when given. Returns the model file content and the history (per-epoch train/validation loss
    and validation NRMSE of f, D, D*)."""
    import torch

    config.validate()
    device = str(select_device(device))
    torch.manual_seed(config.seed)
    bvalues = np.asarray(config.bvalues, float)
    data = synthetic_set(get_prior(config.prior), bvalues, config.samples, config.snr, config.seed)
    inputs = torch.from_numpy(normalised_inputs(data.signals, bvalues))
    targets = torch.from_numpy(np.stack([data.f, data.D, data.Dstar], axis=1))
    split = int(0.9 * len(inputs))
    network, architecture, kwargs = build_network(config)
    network.to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    # Supervised loss: squared errors relative to the training set's mean of each parameter, i.e. the sum of the
    # three squared NRMSEs, so that f, D and D* weigh equally whatever their units.
    scale = targets[:split].mean(dim=0).to(device)
    positive_b = torch.from_numpy(bvalues[bvalues > 0].astype(np.float32)).to(device)
    steps_per_epoch = math.ceil(split / config.batch_size)
    history: TrainingHistory = {"epoch": [], "train_loss": [], "val_loss": [], "val_nrmse": [], "seconds": []}
    start, step = time.time(), 0

    def loss_of(batch_inputs, batch_targets):
        estimate = network(batch_inputs)
        if config.method == "ivimnet":  # unsupervised: the input signal against the estimate's IVIM curve
            f, D, Dstar = estimate[:, :1], estimate[:, 1:2], estimate[:, 2:]
            curve = (1 - f) * torch.exp(-positive_b * D) + f * torch.exp(-positive_b * Dstar)
            return torch.mean((curve - batch_inputs) ** 2)
        return torch.mean(((estimate - batch_targets) / scale) ** 2)

    for epoch in range(config.epochs):
        network.train()
        order = torch.randperm(split)
        total = 0.0
        for first in range(0, split, config.batch_size):
            raise_if_cancelled(cancel)
            index = order[first : first + config.batch_size]
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(config, step, steps_per_epoch)
            loss = loss_of(inputs[index].to(device), targets[index].to(device))
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), config.gradient_clip)
            optimiser.step()
            total += loss.item() * len(index)
            step += 1
            if step % 50 == 0:  # a heartbeat within the epoch (keeps a GUI's progress moving)
                report(progress, (epoch + first / split) / config.epochs, f"epoch {epoch + 1}/{config.epochs}")
        network.eval()
        with torch.no_grad():
            val_inputs, val_targets = inputs[split:].to(device), targets[split:].to(device)
            val_loss = loss_of(val_inputs, val_targets).item()
            estimate = network(val_inputs)
            nrmse = (torch.sqrt(torch.mean((estimate - val_targets) ** 2, dim=0)) / val_targets.mean(dim=0)).tolist()
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(total / split)
        history["val_loss"].append(val_loss)
        history["val_nrmse"].append(nrmse)
        history["seconds"].append(time.time() - start)
        report(
            progress,
            (epoch + 1) / config.epochs,
            f"epoch {epoch + 1}/{config.epochs}: val loss {val_loss:.4g}, "
            f"NRMSE f {nrmse[0]:.3f} D {nrmse[1]:.3f} D* {nrmse[2]:.3f}",
        )
    network.cpu()
    model = ModelFile(
        architecture,
        kwargs,
        network.state_dict(),
        {
            "method": config.method,
            "protocol": {"bvalues": bvalues.tolist(), "units": "s/mm2"},
            "training": {
                **asdict(config),
                "bvalues": bvalues.tolist(),
                "device": device,
                "seconds": round(time.time() - start, 1),
            },
            "data": f"synthetic: prior {config.prior}, Rician noise SNR {config.snr}, {config.samples} signals "
            "(90/10 split)",
            "metrics": {"validation_nrmse": dict(zip(("f", "D", "Dstar"), history["val_nrmse"][-1]))},
            "history": history,
        },
    )
    if out is not None:
        save_model_file(out, model)
    return model, history
