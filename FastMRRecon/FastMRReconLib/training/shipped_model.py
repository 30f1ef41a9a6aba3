"""Build the shipped reconstruction model and its card (``make recon-model``): training pairs, training,
held-out evaluation, model card and manifest entry in ``FastMRRecon/Resources/Models/FastMRRecon``.

Needs ``../shared/data/synthseg`` (the SynthSeg label maps). Intermediate files (pairs, checkpoint) go to
``--work-dir``; an interrupted run resumes from its checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from FastMRICommon.model_files import ManifestEntry, load_model_file, sha256_file, write_manifest_entry
from FastMRReconLib.anatomy.real_anatomy import HELD_OUT_IMAGES, TRAINING_IMAGES
from FastMRReconLib.kspace.sense import DEFAULT_REGULARIZATION
from FastMRReconLib.model.network import NetworkConfig
from FastMRReconLib.model.reconstructor import (
    DEFAULT_MODEL,
    MODELS_DIR,
    PREVIOUS_MODEL,
    REGISTRY,
    SNR_GATE,
    Reconstructor,
)
from FastMRReconLib.training.pairs import (
    FIELDS_OF_VIEW_MM,
    MIN_MATRIX,
    PairConfig,
    load_pairs,
    make_image_pairs,
    make_pairs,
    save_pairs,
    synthseg_sources,
)
from FastMRReconLib.training.trainer import TrainingConfig, save_trained, scores_by_contrast, train

log = logging.getLogger("fastmrrecon")


@dataclass(frozen=True)
class PairSet:
    """One file of pairs: its name in the work folder, how many pairs, their seed and settings."""

    name: str
    count: int
    seed: int
    config: PairConfig = field(default_factory=PairConfig)
    #: "synthseg" (synthesised heads, ``training_data.make_pairs``) or "real" (``real_anatomy`` images).
    objects: str = "synthseg"


#: What the shipped model's pairs draw: noise from SNR 5 to 1000 and none, R from 1 (no undersampling) to 4,
#: the noise-free fully sampled scan as target.
SHIPPED_PAIRS = PairConfig(
    accelerations=(1.0, 1.5, 2.0, 3.0, 4.0), snr_range=(5.0, 1000.0), reference="noise-free", noise_free_fraction=0.1
)
#: The training pair sets of the shipped model.
TRAINING_SETS = (
    PairSet("heads_part0.npz", 600, 2000, SHIPPED_PAIRS),
    PairSet("real_part0.npz", 1200, 2001, SHIPPED_PAIRS, "real"),
    PairSet("heads_part1.npz", 1200, 2002, SHIPPED_PAIRS),
)
VALIDATION_SET = PairSet("validation.npz", 48, 7)
#: Validation pairs drawn like the shipped model's training pairs (SynthSeg validation subjects).
VALIDATION_WIDE = PairSet("validation_wide.npz", 48, 8, SHIPPED_PAIRS)
#: Names of the real training images (the card lists those the model saw).
REAL_NAMES = {image.name for image in TRAINING_IMAGES}
#: Training of the shipped model: noise-aware, started from the previous shipped model's weights.
CONFIG = TrainingConfig(
    steps=2400,
    batch_size=12,
    patch=128,
    l1_weight=10.0,
    seed=0,
    network=NetworkConfig(max_channels=64, noise_input=True),
    warm_start=str(MODELS_DIR / PREVIOUS_MODEL),
)


def _score_rows(scores: dict) -> str:
    order = sorted(key for key in scores if key != "all") + ["all"]
    return "\n".join(
        f"| {key} | {scores[key]['slices']} | {scores[key]['input_psnr']:.2f} / "
        f"{scores[key]['input_ssim']:.4f} | {scores[key]['psnr']:.2f} / {scores[key]['ssim']:.4f} |"
        for key in order
    )


def model_card(path: Path, sha256: str) -> str:
    """The Markdown card of the shipped noise-aware model in ``path`` (from its stored metadata)."""
    model = load_model_file(path)
    meta = model.metadata
    training = meta["training"]
    pairs = meta["pair_config"]
    curve = "\n".join(
        f"| {entry['step']} | {entry['psnr']:.2f} | {entry['ssim']:.4f} |" for entry in meta["validation"]
    )
    sets = "\n".join(
        f"  - `{entry['name']}`: {entry['count']} pairs, seed {entry['seed']}, objects: "
        + ("real images" if entry["objects"] == "real" else "SynthSeg training subjects")
        for entry in meta["data"]
    )
    network = model.build(REGISTRY)
    widths = [block[0].out_channels for block in network.unet.down]
    return f"""# {path.name}: noise-aware head reconstruction network

- **Task**: restore a 2D multi-coil MR magnitude image, combined conventionally (CG-SENSE), accelerated
  (R = 1-4) or not, towards the noise-free fully sampled image, told the image's noise SD map (measured by
  `FastMRReconLib.model.noise_level`, or given by the user and scaled by the strength). Applied slice by slice.
- **Architecture**: residual U-Net (depth {model.config["depth"]}, {"/".join(map(str, widths))} channels per level,
  instance norm followed by FiLM maps from an embedding of the noise level, LeakyReLU; input channels image and
  noise map) + gated fidelity network ({model.config["fidelity_layers"]} conv layers, {model.config["fidelity_channels"]}
  channels) on [U-Net output, input, noise map]: final = input + trust x (U-Net output - input) + correction;
  {sum(int(np.prod(t.shape)) for t in model.state_dict.values()):,} parameters.
  Fully convolutional: any image size >= {network.min_size} x {network.min_size}; per-slice intensity normalisation inside the wrapper.
- **SHA-256**: `{sha256}`
- **Training data**: {meta["pairs"]} slice pairs:
{sets}
  - Synthesised heads (`FastMRReconLib.training.pairs.make_pairs`): the 16 SynthSeg training subjects (first
    80% of `../shared/data/synthseg`, Apache-2.0), random orientation, rotation, elastic deformation, pixel
    size {pairs["pixel_range"][0]:g}-{pairs["pixel_range"][1]:g} mm, field of view {min(FIELDS_OF_VIEW_MM)}-{max(FIELDS_OF_VIEW_MM)} mm,
    matrix at least {MIN_MATRIX}; contrasts {", ".join(pairs["contrasts"])} with jittered TR/TE/TI and tissue
    properties, bias field, texture SD {pairs["texture_range"][0]:g}-{pairs["texture_range"][1]:g}.
  - Real anatomy (`FastMRReconLib.anatomy.real_anatomy.TRAINING_IMAGES`, `make_image_pairs`): slices of
    {", ".join(f"`{name}`" for name in meta["subjects"] if name in REAL_NAMES)}, zoomed 0.6-1.4,
    rotated, flipped, gamma 0.7-1.4. Never used for training: {", ".join(image.name for image in HELD_OUT_IMAGES)}.
  - Every object is scanned: accelerations {", ".join(f"{r:g}" for r in pairs["accelerations"])} (1 = fully
    sampled; equispaced or variable density, {pairs["center_fraction"]:.0%} centre), {pairs["coil_range"][0]}-{pairs["coil_range"][1]} coils,
    SNR {pairs["snr_range"][0]:g}-{pairs["snr_range"][1]:g} (log-uniform, one average) and {pairs["noise_free_fraction"]:.0%} of pairs without noise.
    Input: CG-SENSE (Tikhonov lambda {pairs["sense_regularization"]:g}); target: SENSE of the same scan's fully sampled k-space
    without noise. The real images carry their own noise, which the target keeps.
- **Protocol**: started from `{Path(training["warm_start"]).name}` (the previous shipped model; new inputs
  and FiLM maps start at zero), Adam, learning rate {training["learning_rate"]:g}, {training["steps"]} steps of {training["batch_size"]}
  random {training["patch"]} x {training["patch"]} patches (flips, transposes), loss lambda ||x - x_hat||_1 - SSIM
  (lambda = {training["l1_weight"]:g}, 7 x 7 SSIM) on both stage outputs, seed {training["seed"]}; CPU, 2 cores,
  {meta["training_seconds"] / 60:.0f} min ({meta.get("machine", "")}).
- **Inference**: the reconstructor keeps the network's change fully where the SNR it is told (object mean
  over strength x noise SD, per {SNR_GATE.per}) is <= {SNR_GATE.full:g}, none at >= {SNR_GATE.none:g}, log-linear between
  (`SnrGate`, chosen on training images: `docs/benchmarks/recon_snr_gate.md`): the measured noise includes
  the image's own, which the network cannot tell from acquisition noise, so good images are left alone.
- **Held-out evaluation** (4 SynthSeg validation subjects, never seen in training; PSNR dB / SSIM over the
  reference's object mask, `FastMRReconLib.metrics`; with the gate). Pairs drawn like the training pairs
  (seed {VALIDATION_WIDE.seed}, noise-free target; R = 1 pairs at high SNR and noise-free ones have input PSNRs far
  above 40 dB, which dominate the means):

| contrast | slices | input (CG-SENSE) | network |
|---|---|---|---|
{_score_rows(meta["held_out"])}

  The previous model's validation pairs (seed {VALIDATION_SET.seed}: R = 1.5-4, SNR 15-90, AV=2 target):

| contrast | slices | input (CG-SENSE) | network |
|---|---|---|---|
{_score_rows(meta["held_out_previous_pairs"])}

Validation during training (the first pairs above, without the gate; they only monitor training: the last
step's weights are shipped, no selection or tuning on them):

| step | PSNR dB | SSIM |
|---|---|---|
{curve}

- **Benchmarks** (do-no-harm table on held-out real images, against BART CS-SENSE, the previous model):
  `docs/benchmarks/recon.md`.
- **Limits**: trained on head images only (no body, knee or spine data exist here); 2D Cartesian k-space;
  magnitude images in, magnitude out; spatially correlated noise is partly invisible to the noise estimate.
- **Rebuild**: `make recon-model` (= `python -m FastMRReconLib.training.shipped_model`).
"""


def make_pair_files(work_dir: Path) -> tuple[list[Path], Path]:
    """The training and validation pair files of the shipped model in ``work_dir``, made where missing
    (seeded: the same files on every machine)."""
    work_dir.mkdir(parents=True, exist_ok=True)

    for pair_set in (*TRAINING_SETS, VALIDATION_SET, VALIDATION_WIDE):
        pairs_file(work_dir, pair_set, "validation" if pair_set in (VALIDATION_SET, VALIDATION_WIDE) else "train")
    return ([work_dir / pair_set.name for pair_set in TRAINING_SETS], work_dir / VALIDATION_SET.name)


def pairs_file(work_dir: Path, pair_set: PairSet, split: str) -> Path:
    """The file of ``pair_set`` in ``work_dir``, made when missing (written under a temporary name)."""
    path = work_dir / pair_set.name
    if path.is_file():
        return path
    log.info("making %s (%d pairs)", path, pair_set.count)
    if pair_set.objects == "real":
        pairs = make_image_pairs(TRAINING_IMAGES, pair_set.count, pair_set.seed, pair_set.config)
    else:
        sources = synthseg_sources(split)
        if not sources:
            raise SystemExit("../shared/data/synthseg is needed to make the shipped model's pairs")
        pairs = make_pairs(sources, pair_set.count, pair_set.seed, pair_set.config)
    temporary = path.with_name(path.stem + ".part.npz")
    save_pairs(pairs, temporary)
    temporary.replace(path)
    return path


def build(work_dir: Path, models_dir: Path = MODELS_DIR, device: str = "cpu") -> Path:
    """Make the pairs (skipping existing files), train (resuming), evaluate, write model, card, manifest."""
    training_files, previous_file = make_pair_files(work_dir)
    training = [pair for path in training_files for pair in load_pairs(path)]
    validation = load_pairs(work_dir / VALIDATION_WIDE.name)
    progress = lambda fraction, message: log.info("[%3d%%] %s", round(100 * fraction), message)  # noqa: E731
    result = train(
        training, CONFIG, validation, device=device, checkpoint=work_dir / "checkpoint.pt", progress=progress
    )
    reconstructor = Reconstructor(result.network, device)
    path = models_dir / DEFAULT_MODEL
    subjects = sorted({pair.subject for pair in training})
    sha256 = save_trained(
        path,
        result,
        CONFIG,
        {
            "data": [asdict(pair_set) for pair_set in TRAINING_SETS],
            "pairs": len(training),
            "subjects": subjects,
            "held_out": scores_by_contrast(reconstructor, validation),
            "held_out_previous_pairs": scores_by_contrast(reconstructor, load_pairs(previous_file)),
            "machine": f"{platform.machine()}",
            "pair_config": {**asdict(SHIPPED_PAIRS), "sense_regularization": DEFAULT_REGULARIZATION},
        },
    )
    card = path.with_suffix(".md")
    card.write_text(model_card(path, sha256))
    write_manifest_entry(
        models_dir,
        ManifestEntry(
            path.name, sha256, card.name, "noise-aware head reconstruction, R 1-4, SNR 5-1000 and noise-free"
        ),
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=Path("build/recon-model"), help="pairs and checkpoint")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cards-only", action="store_true", help="rewrite the card of the existing model")
    parser.add_argument(
        "--pairs-only", action="store_true", help="make the training and validation pairs, do not train"
    )
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
