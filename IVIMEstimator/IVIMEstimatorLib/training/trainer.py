"""Training the IVIM networks on synthetic data (``config.TrainingConfig``: Adam, cosine learning-rate warm-up
then cosine decay, 90/10 train/validation split; its defaults are those of the shipped networks).
The supervised loss is the sum of the three squared errors relative to each parameter's mean (f, D and D*
weigh equally), each signal weighted by its SNR to the power ``snr_loss_power`` (``snr_loss_weights``);
IVIM-NET's unsupervised loss is the signal residual of its own estimates. Trained over a range of SNRs
(``snr_low`` < ``snr_high``), a network is noise-aware: each signal's SNR is one more input
(``network_models.normalised_inputs``). Every network trained here has the SD head (``networks.IvimNetwork``),
trained at the same time by the Gaussian negative log-likelihood of the estimate's error (for IVIM-NET too: the
synthetic truth trains its head, not its estimate). ``TrainingConfig`` can be imported from here as well."""

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
    """Per epoch: its number, the mean training and the validation loss (of the estimate), the validation NRMSE of
    (f, D, D*), the share of validation signals whose true f, D, D* lie within +-1 SD of the estimate, and the
    seconds since training began."""

    epoch: list[int]
    train_loss: list[float]
    val_loss: list[float]
    val_nrmse: list[list[float]]
    val_coverage: list[list[float]]
    seconds: list[float]


def build_network(config: TrainingConfig):
    """The untrained network for ``config`` and its constructor arguments."""
    prior = get_prior(config.prior)
    n_inputs = len(config.bvalues) - 1  # b = 0 is the normaliser, not an input
    common = dict(noise_input=is_range(config), uncertainty=True)
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
    kwargs.update(common)
    kwargs.update(config.architecture_options)
    architecture = METHOD_ARCHITECTURE[config.method]
    return REGISTRY[architecture](**kwargs), architecture, kwargs


def is_range(config: TrainingConfig) -> bool:
    """True when ``config`` trains over a range of SNRs (a noise-aware network)."""
    return config.snr_low < config.snr_high


def training_snr(config: TrainingConfig) -> float | tuple[float, float]:
    """The SNR of ``config``'s synthetic signals: one value, or the (lowest, highest) range."""
    return (config.snr_low, config.snr_high) if is_range(config) else config.snr_low


#: Share of errors within +-1 SD of a Gaussian: what the SD maps are scaled to hold on the validation split.
GAUSSIAN_ONE_SD = 0.6827


def calibrate_sd(network, inputs, targets) -> list[float]:
    """Scale the SD head so that |estimate - truth| <= SD for ``GAUSSIAN_ONE_SD`` of the validation signals
    (``inputs``, ``targets``), per parameter; return the factors (1 when they would not be finite)."""
    import torch

    network.eval()
    with torch.no_grad():
        network.sd_calibration.fill_(1.0)
        output = network(inputs)
        ratio = (output[:, :3] - targets).abs() / output[:, 3:]
        factors = torch.quantile(ratio, GAUSSIAN_ONE_SD, dim=0)
        factors = torch.where(torch.isfinite(factors) & (factors > 0), factors, torch.ones_like(factors))
        network.sd_calibration.copy_(factors)
    return factors.tolist()


def snr_loss_weights(config: TrainingConfig, noise_sd: np.ndarray):
    """Per-signal weights of the supervised loss (``TrainingConfig.snr_loss_power``), float32, proportional to
    SNR ** power, SNR = 1 / ``noise_sd`` (S0 = 1 units); all ones for one SNR or power 0."""
    if not is_range(config) or config.snr_loss_power == 0:
        return np.ones(len(noise_sd), np.float32)
    weights = (1.0 / np.asarray(noise_sd, float)) ** config.snr_loss_power
    return (weights / weights.mean()).astype(np.float32)


def describe_snr(config: TrainingConfig) -> str:
    """``SNR 30`` or ``SNR 8-150 (log-uniform)``."""
    if is_range(config):
        return f"SNR {config.snr_low:g}-{config.snr_high:g} (log-uniform)"
    return f"SNR {config.snr_low:g}"


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
    data = synthetic_set(get_prior(config.prior), bvalues, config.samples, training_snr(config), config.seed)
    inputs = torch.from_numpy(normalised_inputs(data.signals, bvalues, data.noise_sd if is_range(config) else None))
    targets = torch.from_numpy(np.stack([data.f, data.D, data.Dstar], axis=1))
    split = int(0.9 * len(inputs))
    weights = torch.from_numpy(snr_loss_weights(config, data.noise_sd)).to(device)
    network, architecture, kwargs = build_network(config)
    network.to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    # Supervised loss: squared errors relative to the training set's mean of each parameter, i.e. the sum of the
    # three squared NRMSEs, so that f, D and D* weigh equally whatever their units.
    scale = targets[:split].mean(dim=0).to(device)
    positive_b = torch.from_numpy(bvalues[bvalues > 0].astype(np.float32)).to(device)
    steps_per_epoch = math.ceil(split / config.batch_size)
    history: TrainingHistory = {
        "epoch": [],
        "train_loss": [],
        "val_loss": [],
        "val_nrmse": [],
        "val_coverage": [],
        "seconds": [],
    }
    start, step = time.time(), 0
    head = [parameter for name, parameter in network.named_parameters() if name.startswith("sd_head.")]
    body = [parameter for name, parameter in network.named_parameters() if not name.startswith("sd_head.")]
    n_b = len(positive_b)

    def loss_of(batch_inputs, batch_targets, batch_weights):
        """(loss of the estimate, negative log-likelihood of the SD head, output [n, 6])."""
        output = network(batch_inputs)
        estimate, sd = output[:, :3], output[:, 3:]
        if config.method == "ivimnet":  # unsupervised: the input signal against the estimate's IVIM curve
            f, D, Dstar = estimate[:, :1], estimate[:, 1:2], estimate[:, 2:]
            curve = (1 - f) * torch.exp(-positive_b * D) + f * torch.exp(-positive_b * Dstar)
            estimate_loss = torch.mean((curve - batch_inputs[:, :n_b]) ** 2)
        else:
            estimate_loss = torch.mean(batch_weights[:, None] * ((estimate - batch_targets) / scale) ** 2)
        error = (estimate.detach() - batch_targets) / scale
        relative_sd = sd / scale
        likelihood_loss = torch.mean(torch.log(relative_sd) + 0.5 * (error / relative_sd) ** 2)
        return estimate_loss, likelihood_loss, output

    for epoch in range(config.epochs):
        network.train()
        order = torch.randperm(split)
        total = 0.0
        for first in range(0, split, config.batch_size):
            raise_if_cancelled(cancel)
            index = order[first : first + config.batch_size]
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(config, step, steps_per_epoch)
            loss, likelihood_loss, _ = loss_of(inputs[index].to(device), targets[index].to(device), weights[index])
            optimiser.zero_grad()
            (loss + likelihood_loss).backward()
            torch.nn.utils.clip_grad_norm_(body, config.gradient_clip)
            torch.nn.utils.clip_grad_norm_(head, config.gradient_clip)
            optimiser.step()
            total += loss.item() * len(index)
            step += 1
            if step % 50 == 0:  # a heartbeat within the epoch (keeps a GUI's progress moving)
                report(progress, (epoch + first / split) / config.epochs, f"epoch {epoch + 1}/{config.epochs}")
        network.eval()
        with torch.no_grad():
            val_inputs, val_targets = inputs[split:].to(device), targets[split:].to(device)
            val_loss_tensor, _, output = loss_of(val_inputs, val_targets, weights[split:])
            val_loss = val_loss_tensor.item()
            estimate, sd = output[:, :3], output[:, 3:]
            nrmse = (torch.sqrt(torch.mean((estimate - val_targets) ** 2, dim=0)) / val_targets.mean(dim=0)).tolist()
            coverage = torch.mean(((estimate - val_targets).abs() <= sd).float(), dim=0).tolist()
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(total / split)
        history["val_loss"].append(val_loss)
        history["val_nrmse"].append(nrmse)
        history["val_coverage"].append(coverage)
        history["seconds"].append(time.time() - start)
        report(
            progress,
            (epoch + 1) / config.epochs,
            f"epoch {epoch + 1}/{config.epochs}: val loss {val_loss:.4g}, "
            f"NRMSE f {nrmse[0]:.3f} D {nrmse[1]:.3f} D* {nrmse[2]:.3f}, within 1 SD "
            f"{coverage[0]:.0%} {coverage[1]:.0%} {coverage[2]:.0%}",
        )
    calibration = calibrate_sd(network, inputs[split:].to(device), targets[split:].to(device))
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
            "data": f"synthetic: prior {config.prior}, Rician noise {describe_snr(config)}, {config.samples} signals "
            "(90/10 split)",
            "metrics": {
                "validation_nrmse": dict(zip(("f", "D", "Dstar"), history["val_nrmse"][-1])),
                "validation_coverage": dict(zip(("f", "D", "Dstar"), history["val_coverage"][-1])),
                "sd_calibration": dict(zip(("f", "D", "Dstar"), calibration)),
            },
            "history": history,
        },
    )
    if out is not None:
        save_model_file(out, model)
    return model, history
