"""Generalisation across contrasts (``make bench-recon-generalisation``): writes
``docs/benchmarks/recon_generalisation.md`` and ``recon/generalisation.json``.

As the anchor study's Table 3: for a target contrast C, a network trained only on C (in-contrast) and one
trained only on the other contrasts (leave-one-contrast-out) are scored on held-out pairs of C (the SynthSeg
validation subjects). Both are trained from the same start with the same settings and number of steps
(``--steps``; the shipped model's configuration otherwise), on the training pairs of ``make recon-model``
(``--work-dir``, default ``build/recon-model``), so only the contrasts seen differ. Target: leave-one-out
within 0.5 dB of in-contrast.

The held-out pairs are made here (``HELD_OUT``, cached in the work folder): the same draws of slice,
deformation, coils and noise for every contrast, so the contrasts are scored on the same anatomy and the
same scans; as many at each acceleration; more slices per contrast than the shipped model's validation
file has. The anchor's orientation/region split (Table 4) is not run: only head data
exist here and the training pairs already mix axial, coronal and sagittal slices.
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

from FastMRReconLib.reconstructor import Reconstructor
from FastMRReconLib.shipped_model import CONFIG, TRAINING_SETS
from FastMRReconLib.training import scores_by_contrast, train
from FastMRReconLib.training_data import PairConfig, load_pairs, make_pairs, save_pairs, synthseg_sources

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks"
#: (pairs per contrast and acceleration, first seed) of the held-out pairs; acceleration number i of
#: ``PairConfig.accelerations`` uses seed + i, for every contrast.
HELD_OUT = (6, 11)


def held_out_pairs(work_dir: Path, contrast: str) -> Path:
    """The held-out pairs of ``contrast`` (module docstring), as many at each acceleration; made on first use."""
    count, seed = HELD_OUT
    path = work_dir / f"generalisation_{contrast}_{count}x{seed}.npz"  # other settings never reuse this file
    if not path.is_file():
        sources, base = synthseg_sources("validation"), PairConfig()
        pairs = [pair for index, acceleration in enumerate(base.accelerations)
                 for pair in make_pairs(sources, count, seed + index,
                                        replace(base, contrasts=(contrast,), accelerations=(acceleration,)))]
        save_pairs(pairs, path)
    return path


def pairs_fingerprint(work_dir: Path) -> str:
    """SHA-256 of the training pairs files: runs on other pairs are never merged into one table."""
    digest = hashlib.sha256()
    for name, _, _ in TRAINING_SETS:
        digest.update((work_dir / name).read_bytes())
    return digest.hexdigest()


def run(work_dir: Path, contrasts: list[str], steps: int) -> dict:
    training = [pair for name, _, _ in TRAINING_SETS for pair in load_pairs(work_dir / name)]
    config = replace(CONFIG, steps=steps)
    results = {"steps": steps, "pairs": pairs_fingerprint(work_dir), "held_out": list(HELD_OUT),
               "config": {"batch_size": config.batch_size, "patch": config.patch,
                          "l1_weight": config.l1_weight, "learning_rate": config.learning_rate},
               "machine": platform.machine(), "contrasts": {}}
    for contrast in contrasts:
        held_out = load_pairs(held_out_pairs(work_dir, contrast))
        entry = {"validation_pairs": len(held_out)}
        for kind, chosen in (("in-contrast", [p for p in training if p.contrast == contrast]),
                             ("leave-one-out", [p for p in training if p.contrast != contrast])):
            start = time.perf_counter()
            result = train(chosen, config)
            scores = scores_by_contrast(Reconstructor(result.network, "cpu"), held_out)[contrast]
            entry[kind] = {"training_pairs": len(chosen), "psnr": scores["psnr"], "ssim": scores["ssim"],
                           "input_psnr": scores["input_psnr"], "input_ssim": scores["input_ssim"],
                           "seconds": time.perf_counter() - start}
            print(contrast, kind, entry[kind], flush=True)
        results["contrasts"][contrast] = entry
    return results


def pairs_text(results: dict) -> str:
    """Which pairs the run used."""
    count, seed = results["held_out"]
    accelerations = PairConfig().accelerations
    return (f"Training pairs: those of `make recon-model` (SHA-256 of the training files `{results['pairs'][:16]}...`). "
            f"Held out: {count} pairs per contrast at each R = {', '.join(f'{r:g}' for r in accelerations)} from the "
            f"SynthSeg validation subjects (seeds {seed}-{seed + len(accelerations) - 1}), with the same draws (slice, "
            "deformation, coils, noise) for every contrast.")


def render(results: dict) -> None:
    rows = []
    for contrast, entry in results["contrasts"].items():
        inside, outside = entry["in-contrast"], entry["leave-one-out"]
        gap = outside["psnr"] - inside["psnr"]
        rows.append(f"| {contrast} | {entry['validation_pairs']} | {inside['input_psnr']:.2f} / {inside['input_ssim']:.4f} | "
                    f"{inside['psnr']:.2f} / {inside['ssim']:.4f} ({inside['training_pairs']}) | "
                    f"{outside['psnr']:.2f} / {outside['ssim']:.4f} ({outside['training_pairs']}) | {gap:+.2f} | "
                    f"{'yes' if gap >= -0.5 else 'no'} |")
    config = results["config"]
    skipped = [c for c in ("T1w", "T2w", "PD", "FLAIR") if c not in results["contrasts"]]
    minutes = [network["seconds"] / 60 for entry in results["contrasts"].values()
               for network in (entry["in-contrast"], entry["leave-one-out"])]
    not_run = (f"Contrasts not run in this run: {', '.join(skipped)} (each network took about "
               f"{sum(minutes) / len(minutes):.0f} min on 2 CPU cores here; `make bench-recon-generalisation` runs all "
               "four)." if skipped else "")
    text = f"""# Reconstruction: generalisation across contrasts

Commands: {'; '.join(f"`{c}`" for c in results.get('commands', [results.get('command')]))}
(`make bench-recon-generalisation` runs all four contrasts with the defaults; `--work-dir` points at the
pairs of `make recon-model`). Machine: {results['machine']}, 2 CPU cores, no GPU. Raw numbers:
`recon/generalisation.json`. {pairs_text(results)}

For each target contrast, two networks of the shipped architecture, trained from the same start for
{results['steps']} steps (batch {config['batch_size']}, {config['patch']} x {config['patch']} patches, lambda
{config['l1_weight']:g}, learning rate {config['learning_rate']:g}): one on the training pairs of that contrast
only (in-contrast), one on the pairs of the three other contrasts (leave-one-contrast-out), as in the anchor
study's Table 3. Scored on the held-out pairs of the target contrast (AV=1 input vs AV=2 reference), PSNR
dB / SSIM over the object mask (`FastMRReconLib.metrics`). These trainings are shorter than the shipped
model's, so their absolute scores are below its; they must be long enough that the networks improve on
their input, or the comparison says nothing (runs of 800 steps, on 9-18 held-out pairs per contrast,
left both networks below the input on T2w and FLAIR, hence 3000 steps and the larger held-out set).

| contrast | pairs | input (CG-SENSE) | in-contrast (training pairs) | leave-one-out (training pairs) | leave-out minus in-contrast, dB | within 0.5 dB? |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{not_run}

Not run: the anchor's orientation/region split (its Table 4). Only head data exist here (no body, knee or
spine images), and the training pairs mix axial, coronal and sagittal slices without recording which, so a
split by region cannot be made honestly from them.
"""
    (OUT / "recon_generalisation.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "recon-model",
                        help="folder with the training pairs of `make recon-model`; the held-out pairs are cached there")
    parser.add_argument("--contrasts", nargs="+", default=["T1w", "T2w", "PD", "FLAIR"])
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps per network (default 3000)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the page from generalisation.json")
    args = parser.parse_args()
    path = OUT / "recon" / "generalisation.json"
    if not args.render_only:
        missing = [name for name, _, _ in TRAINING_SETS if not (args.work_dir / name).is_file()]
        if missing:
            raise SystemExit(f"missing pairs in {args.work_dir}: {', '.join(missing)} (run `make recon-model` first)")
        path.parent.mkdir(parents=True, exist_ok=True)
        results = run(args.work_dir, args.contrasts, args.steps)
        results["commands"] = [" ".join(["python benchmarks/bench_recon_generalisation.py", *sys.argv[1:]])]
        if path.is_file():  # add to an earlier run with the same settings (other contrasts)
            earlier = json.loads(path.read_text())
            if (earlier["steps"], earlier["config"], earlier.get("pairs"), earlier.get("held_out")) == (
                    results["steps"], results["config"], results["pairs"], results["held_out"]):
                results["commands"] = earlier.get("commands", [earlier.get("command")]) + results["commands"]
                results["contrasts"] = {**earlier["contrasts"], **results["contrasts"]}
        path.write_text(json.dumps(results, indent=1) + "\n")
    render(json.loads(path.read_text()))


if __name__ == "__main__":
    main()
