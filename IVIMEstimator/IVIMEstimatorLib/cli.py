"""``ivimestimator``: IVIM mapping tools. Run ``ivimestimator --help`` and ``ivimestimator CMD --help``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

from FastMRICommon.cli import common_options, positive_float, run

log = logging.getLogger("ivimestimator")


def cmd_sample_data(args: argparse.Namespace) -> None:
    from .sample_data import write_placenta_sample

    paths = write_placenta_sample(args.outdir, snr=args.snr, seed=args.seed)
    log.info("wrote %d files to %s", len(paths), args.outdir)


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="ivimestimator", parents=[common],
                                     description="IVIM maps (f, D, D*) from diffusion-weighted MR series.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    sample = sub.add_parser("sample-data", parents=[common], help="write the placenta phantom sample data",
                            description="Write a placenta-like IVIM DWI series (b = 0,10,20,50,80,100,150,200,300,500 "
                                        "s/mm², Rician noise) with its ground-truth f, D, D* maps.")
    sample.add_argument("outdir", type=Path, help="output folder (created)")
    sample.add_argument("--snr", type=positive_float, default=30.0, help="SNR at b = 0 in the placenta (default 30)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.set_defaults(command=cmd_sample_data)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
