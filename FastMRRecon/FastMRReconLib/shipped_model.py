"""Build the shipped reconstruction model and its card (``make recon-model``): training pairs, training,
held-out evaluation, model card and manifest entry in ``FastMRRecon/Resources/Models``.

Needs ``../shared/data/synthseg`` (the SynthSeg label maps). Intermediate files (pairs, checkpoint) go to
``--work-dir``; an interrupted run resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from FastMRICommon.model_files import ManifestEntry, load_model_file, sha256_file, write_manifest_entry

from .reconstructor import DEFAULT_MODEL, MODELS_DIR, REGISTRY, Reconstructor
from .training import TrainingConfig, save_trained, scores_by_contrast, train
from .sense import DEFAULT_REGULARIZATION
from .training_data import (FIELDS_OF_VIEW_MM, MIN_MATRIX, PairConfig, load_pairs, make_pairs, save_pairs,
                            synthseg_sources)

log = logging.getLogger("fastmrrecon")


@dataclass(frozen=True)
class PairSet:
    """One file of pairs: its name in the work folder, how many pairs, their seed and settings."""

    name: str
    count: int
    seed: int
    config: PairConfig = field(default_factory=PairConfig)


#: The training pair sets of the shipped model.
TRAINING_SETS = (PairSet("train_part0.npz", 1600, 1000), PairSet("train_part1.npz", 1600, 1001))
VALIDATION_SET = PairSet("validation.npz", 48, 7)
#: The pair settings of models built before these were stored in the model's metadata.
EARLIER_PAIRS = {"snr_range": (15.0, 45.0), "texture_range": (0.03, 0.03), "sense_regularization": 0.001}
CONFIG = TrainingConfig(steps=6000, batch_size=12, patch=128, l1_weight=10.0, seed=0)


def model_card(path: Path, sha256: str) -> str:
    model = load_model_file(path)
    meta = model.metadata
    training = meta["training"]
    scores = meta["held_out"]
    order = sorted(key for key in scores if key != "all") + ["all"]
    rows = "\n".join(f"| {key} | {scores[key]['slices']} | {scores[key]['input_psnr']:.2f} / "
                     f"{scores[key]['input_ssim']:.4f} | {scores[key]['psnr']:.2f} / {scores[key]['ssim']:.4f} |"
                     for key in order)
    curve = "\n".join(f"| {entry['step']} | {entry['psnr']:.2f} | {entry['ssim']:.4f} |" for entry in meta["validation"])
    stored_pairs = meta.get("pair_config", EARLIER_PAIRS)
    pairs = {**asdict(PairConfig()), **stored_pairs}
    if "pixel_range" in stored_pairs:
        resolution = (f"pixel size {pairs['pixel_range'][0]:g}-{pairs['pixel_range'][1]:g} mm (log-uniform), field of "
                      f"view {min(FIELDS_OF_VIEW_MM)}-{max(FIELDS_OF_VIEW_MM)} mm per axis, matrix at least {MIN_MATRIX}")
    else:  # models built before the pixel size varied
        resolution = "zoom 0.8-1.25 (pixel size 0.8-1.25 mm), matrix 160-256"
    network = model.build(REGISTRY)
    widths = [block[0].out_channels for block in network.unet.down]
    return f"""# {path.name}: multi-contrast head reconstruction network

- **Task**: restore an accelerated (undersampled, one average) 2D multi-coil MR magnitude image, combined
  conventionally (CG-SENSE), towards the fully sampled two-average image. Applied slice by slice.
- **Architecture**: residual U-Net (depth {model.config['depth']}, {'/'.join(map(str, widths))} channels per level,
  instance norm, LeakyReLU) + fidelity network ({model.config['fidelity_layers']} conv layers, {model.config['fidelity_channels']}
  channels) on [U-Net output, input]; {sum(int(np.prod(t.shape)) for t in model.state_dict.values()):,} parameters.
  Fully convolutional: any image size >= {network.min_size} x {network.min_size}; per-slice intensity normalisation inside the wrapper.
- **SHA-256**: `{sha256}`
- **Training data**: {meta['pairs']} synthetic slice pairs (`FastMRReconLib.training_data`) from the 16 SynthSeg
  training subjects (first 80% of `../shared/data/synthseg`, Apache-2.0): random orientation, rotation,
  elastic deformation (each pixel averages 3 x 3 sub-pixel samples of the tissue maps, so boundaries stay as
  sharp as the pixel grid), {resolution}; contrasts {', '.join(pairs['contrasts'])} from 3 T relaxation times with
  TR/TE/TI +-20%, tissue properties +-10%, bias field, texture SD {pairs['texture_range'][0]:g}-{pairs['texture_range'][1]:g};
  accelerations {', '.join(f'{r:g}' for r in pairs['accelerations'])} (equispaced or variable density, 8% centre),
  {pairs['coil_range'][0]}-{pairs['coil_range'][1]} coils, SNR {pairs['snr_range'][0]:g}-{pairs['snr_range'][1]:g}
  at one average. Input: CG-SENSE (Tikhonov lambda {pairs['sense_regularization']:g}) of the AV=1 accelerated
  scan; target: SENSE (R = 1) of the fully sampled AV=2 scan.
- **Protocol**: Adam, learning rate {training['learning_rate']:g}, {training['steps']} steps of {training['batch_size']}
  random {training['patch']} x {training['patch']} patches (flips, transposes), loss lambda ||x - x_hat||_1 - SSIM
  (lambda = {training['l1_weight']:g}, 7 x 7 SSIM) on both stage outputs, seed {training['seed']}; CPU, 2 cores,
  {meta['training_seconds'] / 60:.0f} min ({meta.get('machine', '')}).
- **Held-out evaluation**: {scores['all']['slices']} pairs from the 4 SynthSeg validation subjects (never seen in
  training), made like the training pairs (seed {VALIDATION_SET.seed}); PSNR dB / SSIM over the reference's object
  mask (`FastMRReconLib.metrics`):

| contrast | slices | input (CG-SENSE) | network |
|---|---|---|---|
{rows}

Validation during training (same pairs; they only monitor training: the last step's weights are shipped,
no selection or tuning on them):

| step | PSNR dB | SSIM |
|---|---|---|
{curve}

- **Benchmarks** against BART CS-SENSE and on real images: `docs/benchmarks/recon.md`.
- **Limits**: trained on synthetic head images only (no body, knee or spine data exist here); 2D Cartesian
  k-space; magnitude images in, magnitude out.
- **Rebuild**: `make recon-model` (= `python -m FastMRReconLib.shipped_model`).
"""


def make_pair_files(work_dir: Path) -> tuple[list[Path], Path]:
    """The training and validation pair files of the shipped model in ``work_dir``, made where missing
    (seeded: the same files on every machine)."""
    work_dir.mkdir(parents=True, exist_ok=True)

    def pairs_file(pair_set: PairSet, split: str) -> Path:
        path = work_dir / pair_set.name
        if not path.is_file():
            sources = synthseg_sources(split)
            if not sources:
                raise SystemExit("../shared/data/synthseg is needed to make the shipped model's pairs")
            log.info("making %s (%d pairs)", path, pair_set.count)
            save_pairs(make_pairs(sources, pair_set.count, pair_set.seed, pair_set.config), path)
        return path

    return [pairs_file(pair_set, "train") for pair_set in TRAINING_SETS], pairs_file(VALIDATION_SET, "validation")


def build(work_dir: Path, models_dir: Path = MODELS_DIR, device: str = "cpu") -> Path:
    """Make the pairs (skipping existing files), train (resuming), evaluate, write model, card, manifest."""
    training_files, validation_file = make_pair_files(work_dir)
    training = [pair for path in training_files for pair in load_pairs(path)]
    validation = load_pairs(validation_file)
    progress = lambda fraction, message: log.info("[%3d%%] %s", round(100 * fraction), message)  # noqa: E731
    result = train(training, CONFIG, validation, device=device, checkpoint=work_dir / "checkpoint.pt", progress=progress)
    scores = scores_by_contrast(Reconstructor(result.network, device), validation)
    path = models_dir / DEFAULT_MODEL
    sha256 = save_trained(path, result, CONFIG, {"data": [pair_set.name for pair_set in TRAINING_SETS], "pairs": len(training),
                                                 "held_out": scores, "machine": f"{platform.machine()}",
                                                 "pair_config": {**asdict(PairConfig()),
                                                                 "sense_regularization": DEFAULT_REGULARIZATION}})
    card = path.with_suffix(".md")
    card.write_text(model_card(path, sha256))
    write_manifest_entry(models_dir, ManifestEntry(path.name, sha256, card.name,
                                                   "multi-contrast head, R 1.5-4, AV=1 -> AV=2"))
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("build/recon-model"), help="pairs and checkpoint")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cards-only", action="store_true", help="rewrite the card of the existing model")
    parser.add_argument("--pairs-only", action="store_true", help="make the training and validation pairs, do not train")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.pairs_only:
        make_pair_files(args.work_dir)
    elif args.cards_only:
        path = args.models_dir / DEFAULT_MODEL
        path.with_suffix(".md").write_text(model_card(path, sha256_file(path)))
    else:
        build(args.work_dir, args.models_dir, args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
