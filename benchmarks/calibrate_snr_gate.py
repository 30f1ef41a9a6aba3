"""Choose the SNR gate of noise-aware reconstruction (``FastMRReconLib.model.reconstructor.SnrGate``) on training
images only; writes ``docs/benchmarks/recon_snr_gate.md`` and ``recon_snr_gate/results.json``.

Why a gate: the noise the network measures in a real image includes the image's own noise (its scanner's),
which no estimator can tell from acquisition noise; a network told that level removes it too, and a good
image then comes back smoother than it was. The gate keeps the measured image where the noise the network is
told is low (a good image is left alone) and applies the network fully where it is high.

Protocol: slices of the real *training* images (``real_anatomy.TRAINING_IMAGES``: never the held-out images
of the do-no-harm benchmark), scanned as in ``bench_recon_do_no_harm.py`` at R = 1, 1.5, 2, 3, 4, SNR 10, 30,
100, 300 and noise-free at R = 1. The network's ungated output is computed once per case; each candidate
gate (full at SNR ``FULL``, none at ``NONE``; the SNR taken per pixel from the noise map or per slice from
its median) is applied to it. Chosen: the gate with the highest mean PSNR
gain over the input across the noisy cells among those whose every noisy cell's mean gain is at least
-0.1 dB and whose noise-free inputs come back at >= 50 dB PSNR against themselves (the do-no-harm limits);
if none qualifies, the one whose worst noisy cell is best.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recon_do_no_harm import cells, held_out_slices, scan  # noqa: E402

from FastMRReconLib.anatomy.real_anatomy import TRAINING_IMAGES  # noqa: E402
from FastMRReconLib.metrics import psnr  # noqa: E402
from FastMRReconLib.model.reconstructor import Reconstructor, SnrGate, object_levels  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
FULL = (5.0, 10.0, 15.0, 20.0)
NONE = (20.0, 25.0, 30.0, 40.0, 60.0, 80.0, 120.0)
LIMIT_DB = -0.1
NOISE_FREE_DB = 50.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model file (default: the shipped model)")
    args = parser.parse_args()
    reconstructor = Reconstructor.load(args.model, device="cpu")
    reconstructor.gate = None
    slices = [s for image in TRAINING_IMAGES if image.available() for s in held_out_slices([image])]
    cases = []
    for acceleration, snr in cells():
        for index, (_, image) in enumerate(slices):
            _, sense, reference = scan(image, acceleration, snr, seed=70_000 + index)
            output = reconstructor.reconstruct(sense)
            levels = object_levels(sense[None])
            sigma = reconstructor.noise_sd_maps(sense[None], levels=levels)
            told_snr = {per: SnrGate(1.0, 2.0, per).told_snr(levels, sigma, 1.0)[0] for per in ("pixel", "slice")}
            cases.append(
                {
                    "cell": (acceleration, snr),
                    "input": sense,
                    "output": output,
                    "reference": reference,
                    "told_snr": told_snr,
                    "input_psnr": psnr(sense, reference),
                }
            )
    gates = [(None, "slice")] + [
        (SnrGate(full, none), mode) for mode in ("slice", "pixel") for full in FULL for none in NONE if full < none
    ]
    table = []
    for gate, mode in gates:
        gains: dict = {}
        clean: list = []
        for case in cases:
            weights = 1.0 if gate is None else gate.weights(case["told_snr"][mode])
            gated = np.maximum(case["input"] + weights * (case["output"] - case["input"]), 0)
            if np.isinf(case["cell"][1]):  # noise-free: how far from the input, PSNR (capped at 150 dB)
                clean.append(min(psnr(gated, case["input"]), 150.0))
                continue
            gains.setdefault(case["cell"], []).append(psnr(gated, case["reference"]) - case["input_psnr"])
        means = {cell: float(np.mean(values)) for cell, values in gains.items()}
        table.append(
            {
                "full": None if gate is None else gate.full,
                "none": None if gate is None else gate.none,
                "mode": mode,
                "mean_gain": float(np.mean(list(means.values()))),
                "worst_gain": min(means.values()),
                "noise_free_psnr": float(np.mean(clean)),
                "cells": {f"{a:g}/{s:g}": v for (a, s), v in means.items()},
            }
        )
        print(
            mode,
            table[-1]["full"],
            table[-1]["none"],
            round(table[-1]["mean_gain"], 3),
            round(table[-1]["worst_gain"], 3),
            round(table[-1]["noise_free_psnr"], 1),
            flush=True,
        )
    qualified = [
        row
        for row in table
        if row["worst_gain"] >= LIMIT_DB and row["noise_free_psnr"] >= NOISE_FREE_DB and row["full"] is not None
    ]
    chosen = (
        max(qualified, key=lambda row: row["mean_gain"]) if qualified else max(table, key=lambda row: row["worst_gain"])
    )
    folder = OUT / "recon_snr_gate"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(
        json.dumps({"table": table, "chosen": chosen, "slices": [name for name, _ in slices]}, indent=1, default=float)
    )
    lines = [
        "| SNR from | full at SNR | none at SNR | mean gain dB | worst noisy cell dB | noise-free: PSNR vs input dB |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {row['mode'] if row['full'] else '-'} | {row['full'] or '-'} | {row['none'] or '- (no gate)'} | "
        f"{row['mean_gain']:+.2f} | {row['worst_gain']:+.2f} | {row['noise_free_psnr']:.1f} |"
        for row in table
    ]
    cell_lines = ["| R / SNR | gain dB with the chosen gate | without gate |", "|---|---|---|"]
    ungated = table[0]["cells"]
    cell_lines += [f"| {key} | {value:+.2f} | {ungated[key]:+.2f} |" for key, value in chosen["cells"].items()]
    (OUT / "recon_snr_gate.md").write_text(f"""# SNR gate of the noise-aware reconstruction

Command: `python benchmarks/calibrate_snr_gate.py`. Raw numbers: `recon_snr_gate/results.json`.

{__doc__.split(chr(10), 2)[2].strip()}

Slices ({len(slices)}): {", ".join(name for name, _ in slices)}. Gain: PSNR of the output minus PSNR of the
input against the noise-free fully sampled image, mean per cell (noise-free inputs count their loss, capped
at 100 dB).

{chr(10).join(lines)}

Chosen: SNR per {chosen["mode"]}, full at SNR {chosen["full"]}, none at SNR {chosen["none"]} (`SNR_GATE` in
`FastMRReconLib.model.reconstructor`). Per cell:

{chr(10).join(cell_lines)}
""")
    print("chosen", chosen["mode"], chosen["full"], chosen["none"])


if __name__ == "__main__":
    main()
