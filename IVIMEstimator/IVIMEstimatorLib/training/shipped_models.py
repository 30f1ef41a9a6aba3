"""The networks shipped in ``IVIMEstimator/Resources/Models/IVIMEstimator``: how each is trained, evaluated and
described.

Every shipped model is retrained from this list with ``make ivim-models`` (``python -m
IVIMEstimatorLib.training.shipped_models``): train on synthetic signals, evaluate on an independent held-out set
(other seed) against the Bayes posterior mean under the same prior, write the model file, its card (Markdown)
and its manifest entry (SHA-256).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from FastMRICommon.model_files import (
    ManifestEntry,
    ModelFile,
    load_shipped_model,
    save_model_file,
    sha256_file,
    write_manifest_entry,
)
from IVIMEstimatorLib.fits.methods import METHOD_ARCHITECTURE
from IVIMEstimatorLib.fits.network_models import MODELS_DIR
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES

log = logging.getLogger("ivimestimator")

#: OSIPI TF2.4's 18-value body protocol (s/mm²), the b-values of its reference signals.
OSIPI_BVALUES = (0, 1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 250, 350, 400, 550, 700, 850, 1000)
HELD_OUT_SIGNALS = 20_000
HELD_OUT_SEED = 20261121
#: SNRs of the held-out evaluation in the cards (the noise SD given, as when it is measured well).
HELD_OUT_SNRS = (10.0, 30.0, 100.0)


@dataclass(frozen=True)
class ShippedModel:
    """One shipped network: file name, method, protocol (s/mm²), prior and a description; trained with
    ``TrainingConfig``'s defaults otherwise (SNR range, data size, optimiser)."""

    file: str
    method: str
    bvalues: tuple[float, ...]
    prior: str
    protocol_name: str


SHIPPED: tuple[ShippedModel, ...] = tuple(
    ShippedModel(f"{method}_{protocol}_{prior}.pt", method, tuple(float(b) for b in bvalues), prior, label)
    for protocol, bvalues, prior, label in (
        ("accelerated", ACCELERATED_BVALUES, "placenta", "placenta, accelerated protocol (b0 + 5 b-values)"),
        ("acquired", ACQUIRED_BVALUES, "placenta", "placenta, acquired protocol (10 b-values)"),
        ("osipi18", OSIPI_BVALUES, "generic", "body, OSIPI TF2.4 18-value protocol"),
    )
    for method in METHOD_ARCHITECTURE
)


def held_out_evaluation(model: ModelFile, spec: ShippedModel) -> dict:
    """Per SNR of ``HELD_OUT_SNRS`` (key ``"snr<SNR>"``), on independent synthetic sets: the NRMSE (rmse / mean
    of truth) of f, D, D* of the network and of the ``bayes`` method with the training prior (posterior mean;
    Gaussian likelihood with S0 and sigma marginalised, so close to but not exactly the Bayes-optimal limit,
    which the benchmark computes), and the share of signals whose truth lies within +-1 SD of the network's
    estimate."""
    from IVIMEstimatorLib.fits.estimate import fit
    from IVIMEstimatorLib.fits.priors import get_prior
    from IVIMEstimatorLib.training.synthetic import nrmse, synthetic_set, within_one_sd

    bvalues = np.asarray(spec.bvalues)
    result = {}
    for snr in HELD_OUT_SNRS:
        data = synthetic_set(get_prior(spec.prior), bvalues, HELD_OUT_SIGNALS, snr, HELD_OUT_SEED)
        truth = {"f": data.f, "D": data.D, "Dstar": data.Dstar}
        network = fit(data.signals, bvalues, method=spec.method, model=model, device="cpu", noise_sd=1.0 / snr)
        bayes = fit(data.signals, bvalues, method="bayes", prior=spec.prior, device="cpu")
        result[f"snr{snr:g}"] = {
            "network": {key: round(nrmse(network[key], value), 4) for key, value in truth.items()},
            "bayes_reference": {key: round(nrmse(bayes[key], value), 4) for key, value in truth.items()},
            "within_1sd": {
                key: round(within_one_sd(network[key], network[f"{key}_sd"], value), 3) for key, value in truth.items()
            },
        }
    return result


def _factors(model: ModelFile) -> str:
    factors = model.metadata["metrics"].get("sd_calibration", {})
    return " / ".join(f"{factors[key]:.3f}" for key in ("f", "D", "Dstar")) if factors else "none"


def _loss(spec: ShippedModel, training: dict) -> str:
    if spec.method == "ivimnet":
        return "the residual of the signal against its own estimates' IVIM curve (unsupervised)"
    return (
        "squared errors relative to each parameter's mean, each signal weighted by its SNR to the power "
        f"{training.get('snr_loss_power', 0.0):g} (`TrainingConfig.snr_loss_power`)"
    )


def model_card(spec: ShippedModel, model: ModelFile, sha256: str, evaluation: dict) -> str:
    """The Markdown card of a shipped model."""
    training = model.metadata["training"]
    history = model.metadata["history"]
    rows = "\n".join(
        f"| {snr[3:]} | {key} | {result['network'][key]:.3f} | {result['bayes_reference'][key]:.3f} | "
        f"{result['within_1sd'][key]:.0%} |"
        for snr, result in evaluation.items()
        for key in ("f", "D", "Dstar")
    )
    return f"""# {spec.file}

**{spec.method.upper()}** IVIM network for the {spec.protocol_name}: maps f, D and D* (mm²/s) from
S(b)/S(0).

- **Protocol**: b = {", ".join(f"{b:g}" for b in spec.bvalues)} s/mm² (b = 0 normalises; the data must have
  exactly these b-values, otherwise `ivimestimator train` makes a model for them).
- **Training data**: {model.metadata["data"]}; the prior is defined in `IVIMEstimatorLib/priors.py`,
  the noise SD is S0/SNR. The network is told each voxel's SNR (S0 / the series' noise SD, given or measured:
  `IvimFit.noise`) and gives an SD map for f, D and D* (a head trained by Gaussian negative log-likelihood,
  then scaled so that +-1 SD holds 68.3% of the validation errors: factors f / D / D* {_factors(model)}).
- **Training protocol**: Adam, learning rate {training["learning_rate"]:g}, batch {training["batch_size"]},
  {training["epochs"]} epochs, cosine warm-up over {training["warmup_epochs"]} epochs then cosine decay,
  gradient norm clipped at {training["gradient_clip"]:g}, seed {training["seed"]}, device {training["device"]}
  (2 cores, shared with other work while it trained: {training["seconds"]:.0f} s); loss: {_loss(spec, training)}. \
Architecture `{model.architecture}` with {json.dumps(model.config)}.
- **Validation** (the 10% split): final loss {history["val_loss"][-1]:.4g}.
- **Held-out test** ({HELD_OUT_SIGNALS} independent signals per SNR, seed {HELD_OUT_SEED}, same prior, noise
  SD given), NRMSE = rmse / mean of truth; "within 1 SD": share of signals whose truth lies within +-1 SD map
  of the estimate (calibrated: 60-76%):

| SNR | parameter | this network | `bayes` method, training prior (reference) | within 1 SD |
|---|---|---|---|---|
{rows}

- **Limits**: synthetic training only, one prior; data far outside it (other tissues, SNR outside the
  training range, non-IVIM signal) give biased maps (an SNR outside the range is warned of). Check with the
  voxel inspector or NLLS/Bayes.
- **SHA-256**: `{sha256}`
- **Retrain**: `make ivim-models` (or `ivimestimator train --method {spec.method} --bvals
  {",".join(f"{b:g}" for b in spec.bvalues)} --prior {spec.prior} --snr-range {training["snr_low"]:g},\
{training["snr_high"]:g} --out {spec.file}`).
"""


def build(spec: ShippedModel, models_dir: Path, device: str = "cpu") -> dict:
    """Train, evaluate and write one shipped model with its card and manifest entry; return its evaluation."""
    from IVIMEstimatorLib.training.trainer import TrainingConfig, train

    config = TrainingConfig(method=spec.method, bvalues=spec.bvalues, prior=spec.prior)
    model, _ = train(
        config,
        device=device,
        progress=lambda fraction, message: log.info("%s [%3d%%] %s", spec.file, round(100 * fraction), message),
    )
    evaluation = held_out_evaluation(model, spec)
    model.metadata["metrics"]["held_out_nrmse"] = evaluation
    path = models_dir / spec.file
    sha256 = save_model_file(path, model)
    card = path.with_suffix(".md")
    card.write_text(model_card(spec, model, sha256, evaluation))
    write_manifest_entry(models_dir, ManifestEntry(spec.file, sha256, card.name, spec.protocol_name))
    log.info("%s: held-out NRMSE %s", spec.file, evaluation)
    return evaluation


def rewrite_card(spec: ShippedModel, models_dir: Path) -> None:
    """Rewrite a card from its model file (same weights and SHA-256; the evaluation is in the metadata)."""
    model = load_shipped_model(models_dir, spec.file)
    sha256 = sha256_file(models_dir / spec.file)
    (models_dir / spec.file).with_suffix(".md").write_text(
        model_card(spec, model, sha256, model.metadata["metrics"]["held_out_nrmse"])
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Retrain the shipped IVIM networks (all, or those named).")
    parser.add_argument("names", nargs="*", help="file names from the list (default: all)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cards-only", action="store_true", help="rewrite the cards of the existing models")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    unknown = set(args.names) - {spec.file for spec in SHIPPED}
    if unknown:
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    for spec in SHIPPED:
        if not args.names or spec.file in args.names:
            if args.cards_only:
                rewrite_card(spec, args.models_dir)
            else:
                build(spec, args.models_dir, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
