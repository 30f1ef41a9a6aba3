"""``fastmrrecon``: batch reconstruction tools. Run ``fastmrrecon --help`` and ``fastmrrecon CMD --help``."""

from __future__ import annotations

import argparse
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from FastMRICommon.cli import check_outputs, common_options, positive_float, positive_int, run
from FastMRICommon.errors import InputError
from FastMRICommon.settings import add_arguments, argument_keywords, check_value, from_arguments, settings_field
from FastMRICommon.volume_files import file_suffix, read_volume_array, write_volume_array
from FastMRReconLib.kspace.coil_compression import VIRTUAL_COILS
from FastMRReconLib.kspace.raw_kspace import check_kspace_output, write_raw_kspace
from FastMRReconLib.kspace.simulate import SimulationSettings
from FastMRReconLib.metrics import RoiSettings
from FastMRReconLib.model.settings import MAX_STRENGTH, STRENGTHS, ReconstructionSettings, check_noise_settings

log = logging.getLogger("fastmrrecon")


def _progress(fraction: float, message: str) -> None:
    log.info("[%3d%%] %s", round(100 * fraction), message)


def cmd_sample_data(args: argparse.Namespace) -> None:
    from FastMRReconLib.sample_data import write_head_sample

    SimulationSettings(acceleration=args.acceleration, coils=args.coils, seed=args.seed)  # range checks
    paths = write_head_sample(
        args.outdir,
        acceleration=args.acceleration,
        coils=args.coils,
        slices=args.slices,
        source=args.source,
        seed=args.seed,
        progress=_progress,
    )
    log.info("wrote %d files to %s", len(paths), args.outdir)


def _read_scalar_volume(path: Path):

    array, geometry = read_volume_array(path)
    if array.ndim != 3:
        raise InputError(f"{path} is not a scalar 3D volume (shape {array.shape})")
    return array, geometry


def cmd_simulate(args: argparse.Namespace) -> None:
    from FastMRReconLib.kspace.simulate import simulate_volume

    rows, columns = args.resolution
    settings = from_arguments(SimulationSettings, args, resolution_rows=rows, resolution_columns=columns)
    check_outputs([args.input], [args.output])
    if args.save_kspace is not None:
        check_kspace_output(args.save_kspace)
    array, geometry = _read_scalar_volume(args.input)
    kspace: list | None = [] if args.save_kspace is not None else None
    result = simulate_volume(
        array.astype(float), settings.acquisition(), combine=settings.combine, progress=_progress, kspace_out=kspace
    )
    write_volume_array(result, geometry, args.output)
    if kspace is not None:
        write_raw_kspace(args.save_kspace, np.stack(kspace))
        log.info(
            "wrote %s (k-space [slices, coils, ky, kx] = %s)",
            args.save_kspace,
            "x".join(str(size) for size in (len(kspace), *kspace[0].shape)),
        )
    log.info(
        "wrote %s (R=%g, %d coils, AV=%d, SNR %g)", args.output, args.acceleration, args.coils, args.averages, args.snr
    )


def _strength(text: str) -> float:
    """A strength name of ``STRENGTHS`` or a number (checked by ``check_noise_settings``)."""
    if text in STRENGTHS:
        return STRENGTHS[text]
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {', '.join(STRENGTHS)} or a number, got {text!r}") from None


def cmd_reconstruct_kspace(args: argparse.Namespace) -> None:
    from FastMRReconLib.kspace_logic import (
        COMPLEX_SUFFIXES,
        KSPACE_GEOMETRY,
        reconstruct_kspace_file,
        write_complex_volume,
    )
    from FastMRReconLib.model.kspace_reconstructor import KspaceReconstructor

    check_outputs([args.input], [args.output])
    if args.complex and file_suffix(args.output) not in COMPLEX_SUFFIXES:
        raise InputError(f"--complex writes NIfTI ({', '.join(COMPLEX_SUFFIXES)}), not {args.output.name}")
    if args.no_coil_compression and args.virtual_coils is not None:
        raise InputError("--virtual-coils and --no-coil-compression exclude each other")
    virtual_coils = None if args.no_coil_compression else (args.virtual_coils or VIRTUAL_COILS)
    reconstructor = KspaceReconstructor.load(
        args.model, device=args.device, virtual_coils=virtual_coils, precision=args.precision, refit=args.refit
    )
    images = reconstruct_kspace_file(args.input, reconstructor, progress=_progress, complex_output=args.complex)
    if args.complex:
        write_complex_volume(images, args.output)
    else:
        write_volume_array(images, KSPACE_GEOMETRY, args.output)
    log.info("wrote %s (%d slices of %d x %d, device %s)", args.output, *images.shape, reconstructor.device)


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from FastMRReconLib.model.reconstructor import Reconstructor

    check_noise_settings(args.noise_sd, args.strength)
    if args.noise_sd is not None:
        check_value(settings_field(ReconstructionSettings, "noise_sd"), args.noise_sd)
    check_outputs([args.input], [args.output])
    if args.change_map is not None and args.change_map.resolve() in (args.output.resolve(), args.input.resolve()):
        raise InputError("--change-map must name another file than the input and the output")
    array, geometry = _read_scalar_volume(args.input)
    reconstructor = Reconstructor.load(args.model, device=args.device, precision=args.precision)
    reconstructed = reconstructor.reconstruct(
        array,
        batch_size=args.batch_size,
        progress=_progress,
        noise_sd=args.noise_sd,
        strength=args.strength,
        return_change=args.change_map is not None,
    )
    # a tuple (image, change map) exactly when a change map is asked for
    result, change = reconstructed if isinstance(reconstructed, tuple) else (reconstructed, None)
    write_volume_array(result, geometry, args.output)
    log.info("wrote %s (%d slices of %d x %d, device %s)", args.output, *result.shape, reconstructor.device)
    if change is not None:
        write_volume_array(change, geometry, args.change_map)
        log.info(
            "wrote %s (change in noise SDs: median %.2f, 99th percentile %.2f)",
            args.change_map,
            float(np.median(change)),
            float(np.percentile(change, 99)),
        )


def cmd_metrics(args: argparse.Namespace) -> None:
    from FastMRReconLib.metrics import psnr, ssim

    reference, geometry = _read_scalar_volume(args.reference)
    print("image\tPSNR_dB\tSSIM")
    for path in args.images:
        image, other = _read_scalar_volume(path)
        if image.shape != reference.shape or not other.matches(geometry):
            raise InputError(f"{path} does not have the reference's grid ({image.shape} vs {reference.shape})")
        print(f"{path}\t{psnr(image, reference):.3f}\t{ssim(image, reference):.4f}")


def _ijk(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I,J,K voxel indices such as 120,96,8, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three indices I,J,K, got {text!r}")
    return values


def cmd_roi_stats(args: argparse.Namespace) -> None:
    from FastMRReconLib.metrics import roi_statistics

    size = RoiSettings(roi_size=args.roi_size).roi_size  # range-checked before any file is read
    results = []
    for path in args.volumes:
        array, _ = _read_scalar_volume(path)
        results.append((path, roi_statistics(array, args.roi1, args.roi2, args.background, size)))
    print("volume\tmean1\tsd1\tmean2\tsd2\tmean_background\tsd_background\tSNR1\tSNR2\tCNR")
    for path, stats in results:
        print("\t".join([str(path)] + [f"{value:.4g}" for value in vars(stats).values()]))


def cmd_make_pairs(args: argparse.Namespace) -> None:
    from FastMRReconLib.training.pairs import HeadSource, make_pairs, save_pairs, synthseg_sources

    sources = synthseg_sources(args.split) if args.source == "synthseg" else [HeadSource.mni152()]
    if not sources:
        raise InputError(
            "no SynthSeg label maps in ../shared/data/synthseg (set FASTMRI_SHARED, or use --source mni152)"
        )
    pairs = make_pairs(sources, args.count, args.seed, progress=_progress)
    save_pairs(pairs, args.output)
    log.info("wrote %d pairs from %d subjects to %s", len(pairs), len(sources), args.output)


def _read_pairs(path: Path) -> list:
    """The pairs of a file written by ``make-pairs``, or a one-line InputError naming what is wrong with it."""
    from FastMRReconLib.training.pairs import load_pairs

    if not path.is_file():
        raise InputError(f"no such pairs file: {path}")
    not_pairs = f"{path} is not a training pairs file (an .npz written by `fastmrrecon make-pairs`)"
    try:
        data = np.load(path)  # allow_pickle=False: never runs code from the file
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise InputError(f"{not_pairs}: it holds a single array")
        with data:
            missing = [key for key in ("contrast", "acceleration", "subject") if key not in data.files]
            count = 0 if missing else int(np.size(data["contrast"]))
            missing += [
                f"{kind}_{index}"
                for index in range(count)
                for kind in ("input", "reference")
                if f"{kind}_{index}" not in data.files
            ]
        if missing:
            listed = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise InputError(f"{not_pairs}: it lacks {listed}")
        if count == 0:
            raise InputError(f"{path} holds no pairs")
        return load_pairs(path)
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # not an .npz, or one with Python objects
        raise InputError(not_pairs) from error


def cmd_train(args: argparse.Namespace) -> None:
    from FastMRICommon.device import select_device
    from FastMRReconLib.model.network import NetworkConfig
    from FastMRReconLib.training.trainer import TrainingConfig, distributed_rank, save_trained, train

    checkpoint = args.checkpoint or args.out.with_suffix(".checkpoint.pt")
    check_outputs([*args.data, *args.validation], [args.out, checkpoint])
    pairs = [pair for path in args.data for pair in _read_pairs(path)]
    validation = [pair for path in args.validation for pair in _read_pairs(path)]
    config = TrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        patch=args.patch,
        learning_rate=args.learning_rate,
        l1_weight=args.l1_weight,
        seed=args.seed,
        network=NetworkConfig(channels=args.channels),
    )
    device = select_device(args.device)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # started by torchrun
    if distributed:
        import torch
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        result = train(pairs, config, validation, device=device, checkpoint=checkpoint, progress=_progress)
        if distributed_rank()[0] == 0:
            sha = save_trained(
                args.out, result, config, {"data": [Path(path).name for path in args.data], "pairs": len(pairs)}
            )
            log.info("wrote %s (SHA-256 %s)", args.out, sha)
    finally:
        if distributed:
            dist.destroy_process_group()


def cmd_demo(args: argparse.Namespace) -> None:
    from FastMRReconLib.demo import run_demo

    paths = run_demo(args.head_dir, args.outdir, model=args.model, progress=_progress)
    log.info("wrote %d files to %s", len(paths), args.outdir)


def port_number(text: str) -> int:
    """A TCP port (0-65535; 0: any free port) for argparse."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number from 0 to 65535, got {text!r}")
    return value


def cmd_reading_station(args: argparse.Namespace) -> None:
    from FastMRReconLib.station.server import serve

    serve(args.study, host=args.host, port=args.port, readers=tuple(args.reader or ()))


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="fastmrrecon", parents=[common], description="Deep-learning reconstruction of accelerated MR images."
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    sample = sub.add_parser(
        "sample-data",
        parents=[common],
        help="write the synthetic head slab sample data",
        description="Synthesise a multi-contrast (T1w, T2w, PD, FLAIR) head slab and simulate its "
        "fully sampled (AV=2) and accelerated (AV=1) scans, as NRRD files.",
    )
    sample.add_argument("outdir", type=Path, help="output folder (created)")
    add_arguments(sample, SimulationSettings, only=("acceleration", "coils"))
    sample.add_argument("--slices", type=positive_int, default=16, help="1 mm axial slices in the slab (default 16)")
    sample.add_argument(
        "--source",
        choices=("auto", "synthseg", "mni152"),
        default="auto",
        help="tissue maps: SynthSeg labels from ../shared when present (auto), or nilearn's MNI152",
    )
    add_arguments(sample, SimulationSettings, only=("seed",))
    sample.set_defaults(command=cmd_sample_data)

    simulate = sub.add_parser(
        "simulate",
        parents=[common],
        help="simulate an accelerated scan of a volume",
        description="Simulate an undersampled multi-coil Cartesian acquisition of a fully "
        "sampled magnitude volume (2D k-space per slice) and write its "
        "conventional reconstruction with the input geometry.",
    )
    simulate.add_argument("input", type=Path, help="fully sampled volume (NRRD, NIfTI, MHA)")
    simulate.add_argument("output", type=Path, help="output volume (.nrrd, .nii.gz, .mha)")
    add_arguments(
        simulate, SimulationSettings, skip=("resolution_rows", "resolution_columns", "seed"), required=("acceleration",)
    )
    rows, columns = (settings_field(SimulationSettings, name) for name in ("resolution_rows", "resolution_columns"))
    simulate.add_argument(
        "--resolution",
        type=float,
        nargs=2,
        default=(rows.default, columns.default),
        metavar=("ROWS", "COLUMNS"),
        help=f"acquired fraction of k-space along each slice's rows and columns "
        f"({rows.setting.minimum:g}-{rows.setting.maximum:g}), zero-filled to the matrix "
        f"as scanners interpolate: ringing and correlated noise; default "
        f"{rows.default:g} {columns.default:g} (all)",
    )
    add_arguments(simulate, SimulationSettings, only=("seed",))
    simulate.add_argument(
        "--save-kspace",
        type=Path,
        metavar="FILE",
        help="also write the simulated multi-coil k-space [slices, coils, ky, kx] (.npy, or .h5 "
        "in fastMRI's layout) for `reconstruct-kspace`",
    )
    simulate.set_defaults(command=cmd_simulate)

    raw = sub.add_parser(
        "reconstruct-kspace",
        parents=[common],
        help="reconstruct raw multi-coil k-space",
        description="Reconstruct raw multi-coil Cartesian k-space (fastMRI HDF5, ISMRMRD HDF5, BART "
        ".cfl/.hdr, NumPy .npy; [slices, coils, ky, kx], zeros where not acquired) "
        "with the unrolled data-consistent network; writes the magnitude [slices, ky, "
        "kx] on a 1 mm grid.",
    )
    raw.add_argument("input", type=Path, help="raw k-space file")
    raw.add_argument("output", type=Path, help="output volume (.nrrd, .nii.gz, ...)")
    raw.add_argument("--model", type=Path, help="model file (default: the shipped k-space model)")
    add_arguments(raw, ReconstructionSettings, only=("device", "precision"))
    raw.add_argument(
        "--virtual-coils",
        type=positive_int,
        help=f"compress data with more coils to this many virtual coils first (default {VIRTUAL_COILS})",
    )
    raw.add_argument(
        "--no-coil-compression", action="store_true", help="reconstruct every coil (slower with many coils)"
    )
    raw.add_argument(
        "--refit",
        action="store_true",
        help="run the network again on all samples after the cross-validation (about 1.5 x the time)",
    )
    raw.add_argument("--complex", action="store_true", help="write the complex image (NIfTI complex64)")
    raw.set_defaults(command=cmd_reconstruct_kspace)

    reconstruct = sub.add_parser(
        "reconstruct",
        parents=[common],
        help="restore an accelerated scan with the network",
        description="Apply the reconstruction network slice by slice (2D, in the volume's "
        "k slices) and write the result with the input geometry and scale.",
    )
    reconstruct.add_argument("input", type=Path, help="accelerated magnitude volume (NRRD, NIfTI, MHA)")
    reconstruct.add_argument("output", type=Path, help="output volume")
    reconstruct.add_argument("--model", type=Path, help="model file (default: the shipped model)")
    add_arguments(reconstruct, ReconstructionSettings, only=("device", "precision"))
    reconstruct.add_argument(
        "--batch-size",
        type=positive_int,
        help="slices per batch (default: reconstructor.default_batch_size, which fits the device)",
    )
    noise_sd = settings_field(ReconstructionSettings, "noise_sd")
    reconstruct.add_argument(
        "--noise-sd",
        type=float,
        help=f"{noise_sd.setting.help}, at most "
        f"{noise_sd.setting.maximum:g}; default: measured per "
        "slice from the image",
    )
    strength = settings_field(ReconstructionSettings, "strength")
    reconstruct.add_argument(
        "--strength",
        type=_strength,
        default=strength.default,
        help=f"{strength.setting.describe()}, or a factor 0-{MAX_STRENGTH:g} (0: treat the "
        f"image as noise-free); default {strength.default}",
    )
    reconstruct.add_argument(
        "--change-map",
        type=Path,
        metavar="OUT",
        help="also write |output - input| / noise SD per voxel (where the network departed "
        "from the measured image by more than its noise)",
    )
    reconstruct.set_defaults(command=cmd_reconstruct)

    metrics = sub.add_parser(
        "metrics",
        parents=[common],
        help="PSNR and SSIM against a reference",
        description="PSNR and SSIM of each image against the reference: data range = reference "
        "max, 7x7 SSIM per slice, over the reference's object mask (see "
        "FastMRReconLib.metrics).",
    )
    metrics.add_argument("--reference", type=Path, required=True, help="fully sampled reference volume")
    metrics.add_argument("images", type=Path, nargs="+", help="volumes on the reference's grid")
    metrics.set_defaults(command=cmd_metrics)

    roi = sub.add_parser(
        "roi-stats",
        parents=[common],
        help="ROI SNR and CNR of volumes",
        description="Mean/SD in three in-plane SIZE x SIZE ROIs (ROI 1, ROI 2, background) centred on "
        "voxel indices I,J,K; SNR = mean / SD(background), CNR = (mean1 - mean2) / "
        "SD(background).",
    )
    roi.add_argument("volumes", type=Path, nargs="+", help="volumes to measure (same ROIs in each)")
    roi.add_argument("--roi1", type=_ijk, required=True, help="I,J,K of ROI 1")
    roi.add_argument("--roi2", type=_ijk, required=True, help="I,J,K of ROI 2")
    roi.add_argument("--background", type=_ijk, required=True, help="I,J,K of the background (noise) ROI")
    add_arguments(roi, RoiSettings)
    roi.set_defaults(command=cmd_roi_stats)

    pairs = sub.add_parser(
        "make-pairs",
        parents=[common],
        help="synthesise training pairs",
        description="Synthesise (AV=1 accelerated SENSE, AV=2 fully sampled) slice pairs from head "
        "tissue maps (see FastMRReconLib.training.pairs) into one .npz file.",
    )
    pairs.add_argument("output", type=Path, help="output .npz")
    pairs.add_argument("--count", type=positive_int, default=1000, help="pairs (default 1000)")
    pairs.add_argument(
        "--source",
        choices=("synthseg", "mni152"),
        default="synthseg",
        help="SynthSeg label maps from ../shared (default) or nilearn's MNI152",
    )
    pairs.add_argument(
        "--split",
        choices=("train", "validation"),
        default="train",
        help="SynthSeg subjects: first 80%% (train) or last 20%% (validation)",
    )
    pairs.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    pairs.set_defaults(command=cmd_make_pairs)

    training = sub.add_parser(
        "train",
        parents=[common],
        help="train the reconstruction network",
        description="Train the residual U-Net + fidelity network on pairs from make-pairs; "
        "checkpoints every 200 steps and resumes from OUT.checkpoint.pt.",
    )
    training.add_argument("data", type=Path, nargs="+", help="training pairs (.npz)")
    training.add_argument("--out", type=Path, required=True, help="model file to write (.pt)")
    training.add_argument("--validation", type=Path, nargs="*", default=[], help="validation pairs (.npz)")
    training.add_argument("--checkpoint", type=Path, help="checkpoint file (default OUT.checkpoint.pt)")
    training.add_argument("--steps", type=positive_int, default=4000, help="optimiser steps (default 4000)")
    training.add_argument("--batch-size", type=positive_int, default=12, help="patches per step (default 12)")
    training.add_argument("--patch", type=positive_int, default=128, help="patch side in pixels (default 128)")
    training.add_argument(
        "--learning-rate", type=positive_float, default=1e-4, help="Adam learning rate (default 1e-4)"
    )
    training.add_argument("--l1-weight", type=positive_float, default=1.0, help="lambda of the loss (default 1)")
    training.add_argument("--channels", type=positive_int, default=16, help="U-Net channels of level 1 (default 16)")
    training.add_argument("--device", **argument_keywords(settings_field(ReconstructionSettings, "device")))
    training.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    training.set_defaults(command=cmd_train)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run the module's logic on the head sample data",
        description="Reconstruct the accelerated head sample volumes, measure PSNR/SSIM and ROI "
        "SNR/CNR, render the blinded side-by-side view and run a scripted reader "
        "study (see FastMRReconLib.demo).",
    )
    demo.add_argument("head_dir", type=Path, help="folder written by `fastmrrecon sample-data`")
    demo.add_argument("outdir", type=Path, help="output folder (created)")
    demo.add_argument("--model", type=Path, help="model file (default: the shipped model)")
    demo.set_defaults(command=cmd_demo)

    station = sub.add_parser(
        "reading-station",
        parents=[common],
        help="serve a reader study to browsers (blinded scoring, organizer summary)",
        description="Serve a reader-study file (made by the Slicer module or `fastmrrecon demo`) so that readers "
        "score it from a browser; prints a link per reader, a join link and the organizer's link (kept in "
        "STUDY.station.json beside the study, the same after a restart). See FastMRReconLib.station.",
    )
    station.add_argument("study", type=Path, help="the study file (.sqlite)")
    station.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    station.add_argument("--port", type=port_number, default=8080, help="port (default 8080; 0: any free port)")
    station.add_argument(
        "--reader", action="append", metavar="NAME", help="make a personal link for this reader (repeatable)"
    )
    station.set_defaults(command=cmd_reading_station)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
