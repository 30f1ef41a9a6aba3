"""Motion-correction benchmark (``make bench-registration``): writes ``docs/benchmarks/registration.md``.

A placenta-like 4D phantom (128 x 128 x 15 voxels of 1.25 x 1.25 x 4 mm, b = 0,10,20,50,80,100,150,200,300,
500 s/mm², Rician SNR 30 at b = 0 in the placenta) has every volume moved by its own random affine transform
(translation up to 5 mm per axis, rotation up to 5 degrees about a random axis, scale/shear up to 3%), before
the noise. The motion moves the object, not the acquired voxels: the phantom is built on 1-mm thin slices
over a slab 12 mm wider on each side, moved there, and each 4-mm slice averages its four thin slices (a
rectangular slice profile); the truth maps are averaged the same way. We correct it with ``motion_correct``
(default settings, whole image, no mask) and
report the residual displacement inside the placenta, the run time, and the IVIM maps (SCDNN, acquired
protocol) of the corrected, uncorrected and motion-free series (same noise draw), and of an *oracle*
correction that resamples each volume with the exact inverse of its motion (the best any registration
can do once the thick slices are acquired), over the whole placenta and over its interior (voxels at
least one voxel away from its boundary in every direction).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from FastMRICommon.geometry import array_to_sitk
from IVIMEstimatorLib.diffusion_series import DiffusionSeries
from IVIMEstimatorLib.fits.model import IvimModel
from IVIMEstimatorLib.motion import MotionConfig, motion_correct
from IVIMEstimatorLib.phantoms.motion_phantom import MotionRange, moving_placenta_phantom, residual_displacements
from IVIMEstimatorLib.phantoms.phantom import LABELS

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks"
SEEDS = (0, 1, 2)
KEYS = ("f", "D", "Dstar")


@functools.cache
def scdnn_estimator(bvalues: tuple[float, ...]) -> IvimModel:
    """The SCDNN estimator of a protocol (b-values in s/mm²), built once: its network is read once."""
    return IvimModel(bvalues, "scdnn", device="cpu")


def region_nrmse(series, truth, placenta: np.ndarray, regions: dict) -> dict:
    """NRMSE (rmse / mean of truth) of the SCDNN maps in each named region."""
    maps = scdnn_estimator(tuple(series.bvalues.tolist())).fit(series.signals, mask=placenta).maps()
    return {
        name: {
            key: float(
                np.sqrt(np.nanmean((maps[key][region] - getattr(truth, key)[region]) ** 2))
                / np.mean(getattr(truth, key)[region])
            )
            for key in KEYS
        }
        for name, region in regions.items()
    }


def oracle_correction(moving) -> DiffusionSeries:
    """Each volume resampled with the exact inverse of its motion."""
    volumes = []
    for volume, motion in zip(moving.series.volumes, moving.motion):
        image = array_to_sitk(volume, moving.series.geometry)
        volumes.append(sitk.GetArrayFromImage(sitk.Resample(image, image, motion.GetInverse(), sitk.sitkLinear, 0.0)))
    return DiffusionSeries(np.stack(volumes), moving.series.bvalues, moving.series.geometry)


def run_case(seed: int, use_mask: bool) -> dict:
    moving = moving_placenta_phantom(MotionRange(), seed=seed)
    still = moving_placenta_phantom(MotionRange(), seed=seed, moved=False)
    placenta = moving.phantom.labels == LABELS["placenta"]
    regions = {"placenta": placenta, "interior": ndimage.binary_erosion(placenta, np.ones((3, 3, 3), bool))}
    # a user's rough ROI: the placenta grown by ~10 mm in-plane and one slice through-plane
    mask = ndimage.binary_dilation(placenta, np.ones((3, 17, 17), bool)) if use_mask else None
    start = time.perf_counter()
    result = motion_correct(moving.series, mask=mask, config=MotionConfig())
    seconds = time.perf_counter() - start
    case = {
        "seed": seed,
        "mask": use_mask,
        "seconds": seconds,
        "rounds": len(result.displacements_mm),
        "chosen_round": result.chosen_round,
        "displacements_mm": result.displacements_mm,
        "rejected": result.rejected,
        "voxels": {name: int(region.sum()) for name, region in regions.items()},
    }
    case.update(residual_displacements(moving, result.transforms, placenta))
    case["nrmse"] = {
        label: region_nrmse(series, moving.phantom, placenta, regions)
        for label, series in (
            ("motion-free", still.series),
            ("uncorrected", moving.series),
            ("corrected", result.series),
            ("oracle", oracle_correction(moving)),
        )
    }
    print(json.dumps({k: v for k, v in case.items() if k != "displacements_mm"}, default=float), flush=True)
    return case


def render(cases: list[dict]) -> None:
    """Write registration.md from the cases."""
    lines = [
        "| mask | seed | before mean / max (mm) | after mean / max (mm) | absolute after mean / max (mm) "
        "| time (s) | rounds (kept) | rejected registrations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        lines.append(
            f"| {'placenta ROI' if case['mask'] else 'none'} | {case['seed']} | "
            f"{case['before_inter_volume_mean_mm']:.2f} / {case['before_inter_volume_max_mm']:.2f} | "
            f"{case['after_inter_volume_mean_mm']:.2f} / {case['after_inter_volume_max_mm']:.2f} | "
            f"{case['after_absolute_mean_mm']:.2f} / {case['after_absolute_max_mm']:.2f} | {case['seconds']:.0f} | "
            f"{case['rounds']} ({case['chosen_round']}) | {case.get('rejected', 'n/a')} |"
        )
    labels = ("motion-free", "uncorrected", "corrected", "oracle")
    maps = [
        "| seed | region (voxels) | " + " | ".join(labels) + " | corrected / motion-free (worst) |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        for region, voxels in case["voxels"].items():
            n = {label: case["nrmse"][label][region] for label in labels}
            ratio = max(n["corrected"][k] / n["motion-free"][k] for k in KEYS)
            cells = [" / ".join(f"{n[label][k]:.3f}" for k in KEYS) for label in labels]
            maps.append(f"| {case['seed']} | {region} ({voxels}) | " + " | ".join(cells) + f" | {ratio:.2f} |")
    worst_oracle = max(
        case["nrmse"]["corrected"]["placenta"][k] / case["nrmse"]["oracle"]["placenta"][k]
        for case in cases
        for k in KEYS
    )
    text = f"""# Motion-correction benchmark

Command: `make bench-registration` (= `python benchmarks/bench_registration.py`). Machine:
{platform.machine()}, {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}. Raw numbers:
`registration.json`.

{__doc__.split(chr(10), 2)[2].strip()}

Residual displacement, inside the placenta: voxel x of corrected volume v shows the motion-free point
motion_v(correction_v(x)). *Inter-volume*: its distance to the mean of that point over the volumes (the
misalignment between b-values, which is what corrupts a voxel's IVIM curve; a shift common to all volumes is
not observable from the data). *Absolute*: its distance to x (the template sits at the volumes' mean
position, not at the motion-free one). Targets: inter-volume mean <= 0.5 mm and max <= 1.5 mm, <= 60 s.

{chr(10).join(lines)}

IVIM maps (SCDNN, shipped acquired-protocol model), NRMSE f / D / D* (rmse / mean of truth); target:
corrected within 10% of motion-free:

{chr(10).join(maps)}

Reading the map table: inside the placenta's interior the corrected maps are as good as or better than
the motion-free ones (resampling averages some noise). Over the whole placenta, the voxels on its border
stay worse even with the oracle correction: a 4-mm slice acquired after the object tilted or shifted mixes
placenta and amniotic fluid (fast, free diffusion) in proportions that differ between b-values, and no
resampling of the acquired slices can unmix them. Over the whole placenta the corrected NRMSE is at most
{worst_oracle:.2f} times the oracle's (worst parameter and seed), i.e. close to what any volume-to-volume
correction can reach on this data.
"""
    (OUT / "registration.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split(chr(10))[0])
    parser.add_argument("--render-only", action="store_true", help="rewrite registration.md from registration.json")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        cases = json.loads((OUT / "registration.json").read_text())
    else:
        cases = [run_case(seed, use_mask=False) for seed in SEEDS]
        (OUT / "registration.json").write_text(json.dumps(cases, indent=1, default=float))
    render(cases)


if __name__ == "__main__":
    main()
