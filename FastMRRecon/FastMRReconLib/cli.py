"""``fastmrrecon``: batch reconstruction tools. Run ``fastmrrecon --help`` and ``fastmrrecon CMD --help``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from FastMRICommon.cli import common_options, positive_float, positive_int, run
from FastMRICommon.mrml_bridge import read_volume_array, write_volume_array

from .masks import MASKS
from .simulate import AcquisitionConfig

log = logging.getLogger("fastmrrecon")


def _progress(fraction: float, message: str) -> None:
    log.info("[%3d%%] %s", round(100 * fraction), message)


def cmd_sample_data(args: argparse.Namespace) -> None:
    from .sample_data import write_head_sample

    paths = write_head_sample(args.outdir, acceleration=args.acceleration, coils=args.coils, slices=args.slices,
                              source=args.source, seed=args.seed, progress=_progress)
    log.info("wrote %d files to %s", len(paths), args.outdir)


def cmd_simulate(args: argparse.Namespace) -> None:
    from .simulate import simulate_volume

    array, geometry = read_volume_array(args.input)
    if array.ndim != 3:
        from FastMRICommon.errors import InputError
        raise InputError(f"{args.input} is not a scalar 3D volume (shape {array.shape})")
    config = AcquisitionConfig(acceleration=args.acceleration, mask=args.mask, center_fraction=args.center_fraction,
                               coils=args.coils, averages=args.averages, snr=args.snr, seed=args.seed)
    result = simulate_volume(array.astype(float), config, progress=_progress)
    write_volume_array(result, geometry, args.output)
    log.info("wrote %s (R=%g, %d coils, AV=%d, SNR %g)", args.output, args.acceleration, args.coils, args.averages,
             args.snr)


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="fastmrrecon", parents=[common],
                                     description="Deep-learning reconstruction of accelerated MR images.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    sample = sub.add_parser("sample-data", parents=[common], help="write the synthetic head slab sample data",
                            description="Synthesise a multi-contrast (T1w, T2w, PD, FLAIR) head slab and simulate its "
                                        "fully sampled (AV=2) and accelerated (AV=1) scans, as NRRD files.")
    sample.add_argument("outdir", type=Path, help="output folder (created)")
    sample.add_argument("--acceleration", type=positive_float, default=2.0, help="undersampling factor R (default 2)")
    sample.add_argument("--coils", type=positive_int, default=8, help="receive coils (default 8)")
    sample.add_argument("--slices", type=positive_int, default=16, help="1 mm axial slices in the slab (default 16)")
    sample.add_argument("--source", choices=("auto", "synthseg", "mni152"), default="auto",
                        help="tissue maps: SynthSeg labels from ../shared when present (auto), or nilearn's MNI152")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.set_defaults(command=cmd_sample_data)

    simulate = sub.add_parser("simulate", parents=[common], help="simulate an accelerated scan of a volume",
                              description="Simulate an undersampled multi-coil Cartesian acquisition of a fully "
                                          "sampled magnitude volume (2D k-space per slice) and write its "
                                          "zero-filled root-sum-of-squares reconstruction with the input geometry.")
    simulate.add_argument("input", type=Path, help="fully sampled volume (NRRD, NIfTI, MHA)")
    simulate.add_argument("output", type=Path, help="output volume (.nrrd, .nii.gz, .mha)")
    simulate.add_argument("--acceleration", type=positive_float, required=True, help="undersampling factor R, 1-16")
    simulate.add_argument("--mask", choices=sorted(MASKS), default="equispaced", help="line pattern (default equispaced)")
    simulate.add_argument("--center-fraction", type=positive_float, default=0.08,
                          help="fraction of central lines always acquired (default 0.08)")
    simulate.add_argument("--coils", type=positive_int, default=8, help="receive coils (default 8)")
    simulate.add_argument("--averages", type=positive_int, default=1, help="signal averages (default 1)")
    simulate.add_argument("--snr", type=positive_float, default=30.0,
                          help="object mean / noise SD of a fully sampled single-average image (default 30)")
    simulate.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    simulate.set_defaults(command=cmd_simulate)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
