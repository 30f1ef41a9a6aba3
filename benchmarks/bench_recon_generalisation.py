"""Generalisation across contrasts and orientations (``make bench-recon-generalisation``): writes
``docs/benchmarks/recon_generalisation.md``, ``recon/generalisation.json`` (contrasts) and
``recon/generalisation_orientation.json`` (orientations).

As the anchor study's Table 3 (``--split contrast``): for a target contrast C, a network trained only on C
(in-contrast) and one trained only on the other contrasts (leave-one-contrast-out) are scored on held-out pairs
of C (the SynthSeg validation subjects). As its Table 4 (``--split orientation``; the anchor split by region,
only heads exist here): the same for a target slice orientation (axial, coronal, sagittal). Both networks are
trained from the same start with the same settings and number of steps (``--steps``; the shipped model's
configuration otherwise), on the training pairs of ``make recon-model`` (``--work-dir``, default
``build/recon-model``), so only the contrasts or orientations seen differ. Target: leave-one-out within 0.5
dB of in-contrast.

The held-out pairs are made here (``HELD_OUT``, cached in the work folder), as many at each acceleration and
more per target than the shipped model's validation file has. For contrasts they are the same draws of
slice, deformation, coils and noise for every contrast, so the contrasts are scored on the same anatomy and
the same scans; for orientations the same seeds (a slice of another orientation is other anatomy).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from FastMRReconLib.model.reconstructor import Reconstructor
from FastMRReconLib.training.pairs import PairConfig, load_pairs, make_pairs, save_pairs, synthseg_sources
from FastMRReconLib.training.shipped_model import CONFIG, TRAINING_SETS
from FastMRReconLib.training.trainer import scores_by_contrast, train

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks"
#: (pairs per target and acceleration, first seed) of the held-out pairs; acceleration number i of
#: ``PairConfig.accelerations`` uses seed + i, for every target.
HELD_OUT = (6, 11)
#: The issue's target: leave-one-out at most this much PSNR (dB) below the in-contrast / in-orientation network.
TARGET_GAP_DB = 0.5
#: The splits: the ``PairConfig`` field (and key of the results) listing a split's values, and its results file.
SPLITS = {
    "contrast": ("contrasts", "generalisation.json"),
    "orientation": ("orientations", "generalisation_orientation.json"),
}


def held_out_pairs(work_dir: Path, split: str, target: str) -> Path:
    """The held-out pairs of ``target`` (a contrast or an orientation, module docstring), as many at each
    acceleration; made on first use."""
    count, seed = HELD_OUT
    path = work_dir / f"generalisation_{target}_{count}x{seed}.npz"  # other settings never reuse this file
    if not path.is_file():
        sources, base = synthseg_sources("validation"), PairConfig()
        pairs = [
            pair
            for index, acceleration in enumerate(base.accelerations)
            for pair in make_pairs(
                sources,
                count,
                seed + index,
                replace(base, accelerations=(acceleration,), **{SPLITS[split][0]: (target,)}),
            )
        ]
        save_pairs(pairs, path)
    return path


def pairs_fingerprint(work_dir: Path) -> str:
    """SHA-256 of the training pairs' arrays (names and contents; not of the ``.npz`` files, whose zip entries
    carry the time they were written): runs on other pairs are never merged into one table."""
    digest = hashlib.sha256()
    for pair_set in TRAINING_SETS:
        with np.load(work_dir / pair_set.name) as data:
            for name in sorted(data.files):
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(data[name]).tobytes())
    return digest.hexdigest()


def run(work_dir: Path, split: str, targets: list[str], steps: int) -> dict:
    training = [pair for pair_set in TRAINING_SETS for pair in load_pairs(work_dir / pair_set.name)]
    if split == "orientation" and any(pair.orientation == "unknown" for pair in training):
        raise SystemExit(
            f"the training pairs in {work_dir} do not record their slice orientation (made before it was "
            "recorded); make them again in a new folder: python -m FastMRReconLib.training.shipped_model "
            "--pairs-only --work-dir NEW_FOLDER (the same seeds give the same images)"
        )
    config = replace(CONFIG, steps=steps)
    key = SPLITS[split][0]
    results = {
        "steps": steps,
        "pairs": pairs_fingerprint(work_dir),
        "held_out": list(HELD_OUT),
        "config": {
            "batch_size": config.batch_size,
            "patch": config.patch,
            "l1_weight": config.l1_weight,
            "learning_rate": config.learning_rate,
        },
        "machine": platform.machine(),
        key: {},
    }
    for target in targets:
        held_out = load_pairs(held_out_pairs(work_dir, split, target))
        entry = {"validation_pairs": len(held_out)}
        inside = [pair for pair in training if getattr(pair, split) == target]
        outside = [pair for pair in training if getattr(pair, split) != target]
        for kind, chosen in ((f"in-{split}", inside), ("leave-one-out", outside)):
            start = time.perf_counter()
            result = train(chosen, config)
            scores = scores_by_contrast(Reconstructor(result.network, "cpu"), held_out)["all"]
            entry[kind] = {
                "training_pairs": len(chosen),
                "psnr": scores["psnr"],
                "ssim": scores["ssim"],
                "input_psnr": scores["input_psnr"],
                "input_ssim": scores["input_ssim"],
                "seconds": time.perf_counter() - start,
            }
            print(target, kind, entry[kind], flush=True)
        results[key][target] = entry
    return results


def pairs_text(results: dict, split: str) -> str:
    """Which pairs the run used."""
    count, seed = results["held_out"]
    accelerations = PairConfig().accelerations
    same = (
        "with the same draws (slice, deformation, coils, noise) for every contrast"
        if split == "contrast"
        else "with the same seeds for every orientation"
    )
    return (
        f"Training pairs: those of `make recon-model` (SHA-256 of the training files `{results['pairs'][:16]}...`). "
        f"Held out: {count} pairs per {split} at each R = {', '.join(f'{r:g}' for r in accelerations)} from the "
        f"SynthSeg validation subjects (seeds {seed}-{seed + len(accelerations) - 1}), {same}."
    )


def section(results: dict, split: str) -> str:
    """The page's table for one split, with the commands and settings of its runs."""
    key = SPLITS[split][0]
    rows, gaps, met = [], [], 0
    for target, entry in results[key].items():
        inside, outside = entry[f"in-{split}"], entry["leave-one-out"]
        gap = outside["psnr"] - inside["psnr"]
        within = gap >= -TARGET_GAP_DB
        gaps.append(gap)
        met += within
        rows.append(
            f"| {target} | {entry['validation_pairs']} | {inside['input_psnr']:.2f} / {inside['input_ssim']:.4f} | "
            f"{inside['psnr']:.2f} / {inside['ssim']:.4f} ({inside['training_pairs']}) | "
            f"{outside['psnr']:.2f} / {outside['ssim']:.4f} ({outside['training_pairs']}) | {gap:+.2f} | "
            f"{'yes' if within else 'no'} |"
        )
    config = results["config"]
    skipped = [value for value in getattr(PairConfig(), key) if value not in results[key]]
    minutes = [
        entry[kind]["seconds"] / 60 for entry in results[key].values() for kind in (f"in-{split}", "leave-one-out")
    ]
    summary = (
        f"\n\nLeave-one-out within {TARGET_GAP_DB:g} dB of in-{split}: {met} of the {len(gaps)} {split}s run "
        f"(mean difference {sum(gaps) / len(gaps):+.2f} dB)."
    )
    timing = (
        f" A network took {min(minutes):.0f}-{max(minutes):.0f} min on 2 CPU cores here, the longer ones when the "
        "machine was shared."
    )
    not_run = f"\n\nNot run yet: {', '.join(skipped)}." if skipped else ""
    commands = "; ".join(f"`{command}`" for command in results.get("commands", [results.get("command")]))
    return f"""Commands: {commands}. Machine: {results["machine"]}, 2 CPU cores, no GPU. Raw numbers:
`recon/{SPLITS[split][1]}`. {pairs_text(results, split)} Networks trained for {results["steps"]} steps (batch
{config["batch_size"]}, {config["patch"]} x {config["patch"]} patches, lambda {config["l1_weight"]:g}, learning rate
{config["learning_rate"]:g}).

| {split} | pairs | input (CG-SENSE) | in-{split} (training pairs) | leave-one-out (training pairs) | leave-out minus in-{split}, dB | within {TARGET_GAP_DB:g} dB? |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}{summary}{timing}{not_run}"""


def render() -> None:
    """Write the page from the results files present."""
    results = {
        split: json.loads(path.read_text())
        for split, (_, name) in SPLITS.items()
        if (path := OUT / "recon" / name).is_file()
    }
    orientation = (
        section(results["orientation"], "orientation")
        if "orientation" in results
        else "Not run yet (`--split orientation`)."
    )
    contrast = (
        section(results["contrast"], "contrast") if "contrast" in results else "Not run yet (`--split contrast`)."
    )
    text = f"""# Reconstruction: generalisation across contrasts and orientations

`make bench-recon-generalisation` runs both splits with the defaults (`--work-dir` points at the pairs of
`make recon-model`). For each target contrast (or orientation), two networks of the shipped architecture,
trained from the same start with the same settings: one on the training pairs of that contrast only
(in-contrast), one on the pairs of all the others (leave-one-out), as in the anchor study's Tables 3 and 4.
Scored on held-out pairs of the target (AV=1 input vs AV=2 reference), PSNR dB / SSIM over the object mask
(`FastMRReconLib.metrics`); target: leave-one-out within {TARGET_GAP_DB:g} dB of in-contrast. These trainings are shorter
than the shipped model's, so their absolute scores are below its; they must be long enough that the networks
improve on their input, or the comparison says nothing (runs of 800 steps, on 9-18 held-out pairs per
contrast, left both networks below the input on T2w and FLAIR, hence 3000 steps and the larger held-out set).

## Leave one contrast out (the anchor's Table 3)

{contrast}

## Leave one orientation out (in place of the anchor's Table 4)

The anchor split its data by region (anatomy). Only head data exist here (no body, knee or spine images), so
the split that can be made honestly is by slice orientation: networks trained on axial and coronal slices
scored on sagittal ones, and so on. Each training pair records its orientation (pairs made before that
was recorded must be made again; the same seeds give the same images, so the training files of the two
tables hold identical images and contrasts although their hashes differ).

{orientation}
"""
    (OUT / "recon_generalisation.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO / "build" / "recon-model",
        help="folder with the training pairs of `make recon-model`; the held-out pairs are cached there",
    )
    parser.add_argument("--split", choices=list(SPLITS), default="contrast")
    parser.add_argument(
        "--targets", "--contrasts", nargs="+", help="contrasts or orientations to hold out (default: all of the split)"
    )
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps per network (default 3000)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the page from the results files")
    args = parser.parse_args()
    key, results_file = SPLITS[args.split]
    path = OUT / "recon" / results_file
    if not args.render_only:
        choices = getattr(PairConfig(), key)
        targets = args.targets or list(choices)
        unknown = sorted(set(targets) - set(choices))
        if unknown:
            parser.error(f"unknown {args.split}: {', '.join(unknown)} (one of {', '.join(choices)})")
        missing = [pair_set.name for pair_set in TRAINING_SETS if not (args.work_dir / pair_set.name).is_file()]
        if missing:
            raise SystemExit(f"missing pairs in {args.work_dir}: {', '.join(missing)} (run `make recon-model` first)")
        path.parent.mkdir(parents=True, exist_ok=True)
        results = run(args.work_dir, args.split, targets, args.steps)
        results["commands"] = [" ".join(["python benchmarks/bench_recon_generalisation.py", *sys.argv[1:]])]
        if path.is_file():  # add to an earlier run with the same settings (other targets)
            earlier = json.loads(path.read_text())
            if (earlier["steps"], earlier["config"], earlier.get("pairs"), earlier.get("held_out")) == (
                results["steps"],
                results["config"],
                results["pairs"],
                results["held_out"],
            ):
                results["commands"] = earlier.get("commands", [earlier.get("command")]) + results["commands"]
                results[key] = {**earlier[key], **results[key]}
        path.write_text(json.dumps(results, indent=1) + "\n")
    render()


if __name__ == "__main__":
    main()
