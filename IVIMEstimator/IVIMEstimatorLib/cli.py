"""``ivimestimator``: IVIM mapping tools. Run ``ivimestimator --help`` and ``ivimestimator CMD --help``."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from FastMRICommon.cli import check_outputs, common_options, positive_float, run
from FastMRICommon.errors import InputError, ProgressCallback
from FastMRICommon.settings import add_arguments, argument_keywords, from_arguments, settings_field
from FastMRICommon.volume_files import VOLUME_SUFFIXES, read_volume_array, write_volume_array
from IVIMEstimatorLib.diffusion_series import parse_bvalues, read_bvalues_file, read_series_array, write_series_array

log = logging.getLogger("ivimestimator")


def cmd_sample_data(args: argparse.Namespace) -> None:
    from IVIMEstimatorLib.sample_data import write_placenta_sample

    paths = write_placenta_sample(args.outdir, snr=args.snr, seed=args.seed)
    log.info("wrote %d files to %s", len(paths), args.outdir)


def _bvalues_argument(args: argparse.Namespace):
    if args.bvals and args.bvals_file:
        raise InputError("give --bvals or --bvals-file, not both")
    if args.bvals:
        return parse_bvalues(args.bvals, source="--bvals")
    return read_bvalues_file(args.bvals_file) if args.bvals_file else None


def _read_mask(path: Path | None, series, source: Path) -> np.ndarray | None:
    """A mask volume (non-zero = inside) on the series' grid, or None."""
    if path is None:
        return None
    mask_array, mask_geometry = read_volume_array(path)
    if mask_array.shape != series.volumes.shape[1:] or not mask_geometry.matches(series.geometry):
        raise InputError(f"mask {path} is not on the grid of {source}")
    return mask_array > 0


def _progress(fraction: float, message: str) -> None:
    log.info("[%3d%%] %s", round(100 * fraction), message)


def _progress_in_tenths() -> ProgressCallback:
    """``_progress`` at most once per tenth of the job (a fit reports after every chunk of voxels)."""
    logged = [-1]

    def progress(fraction: float, message: str) -> None:
        if int(10 * fraction) > logged[0]:
            logged[0] = int(10 * fraction)
            _progress(fraction, message)

    return progress


# -- output paths: checked before any work, so that bad ones fail in a second with one line (exit 2) -------


def _same_path(first: Path, second: Path) -> bool:
    """Both name the same file or folder (under any spelling or link)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return first.resolve() == second.resolve()


def _check_output_file(path: Path, inputs: Sequence[Path | None] = ()) -> None:
    """``path`` can be written as a file: not one of ``inputs`` nor a folder (``check_outputs``), and no parent
    of it is a file."""
    check_outputs([source for source in inputs if source is not None], [path])
    _check_parents(path, "the output")


def _check_parents(path: Path, what: str) -> None:
    """The nearest existing parent of ``path`` is a folder (else ``path`` cannot be created)."""
    parent = next((folder for folder in path.parents if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"{what} {path} cannot be created: {parent} is a file")


def snr_range(text: str) -> tuple[float, float]:
    """argparse type of ``--snr-range``: ``LOW,HIGH``, two numbers with LOW <= HIGH (their range is checked by
    ``TrainingConfig``)."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give two numbers LOW,HIGH, got {text!r}") from None
    if not low <= high:
        raise argparse.ArgumentTypeError(f"LOW must not exceed HIGH, got {text!r}")
    return low, high


def _earlier_fit(outdir: Path, overwrite: bool, inputs: Sequence[Path | None]) -> list[Path]:
    """The maps of an earlier fit in ``outdir``, which this fit replaces (only with ``--overwrite``; other files
    stay). Refuses an output folder that is an input, a file, or (without ``--overwrite``) not empty."""
    from IVIMEstimatorLib.fits.model import MAP_KEYS
    from IVIMEstimatorLib.map_logic import EXPORT_FORMATS, STAGING_PREFIX

    for source in inputs:
        if source is not None and _same_path(outdir, source):
            raise InputError(f"the output folder {outdir} is the input {source}: choose another folder")
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"the output folder {outdir} is a file")
    _check_parents(outdir, "the output folder")
    entries = sorted(outdir.iterdir()) if outdir.is_dir() else []
    if entries and not overwrite:
        names = ", ".join(entry.name for entry in entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise InputError(
            f"the output folder {outdir} is not empty ({names}): choose an empty folder, or pass "
            "--overwrite to replace the maps of an earlier fit"
        )
    ours = {key + suffix for key in MAP_KEYS for suffix in EXPORT_FORMATS.values()} | {WARNINGS_FILE}
    earlier = [entry for entry in entries if entry.name in ours or entry.name.startswith(STAGING_PREFIX)]
    check_outputs(
        [source for source in inputs if source is not None],  # never replace an input
        [entry for entry in earlier if entry.is_file()],
    )
    return earlier


def _motion_correct(series, mask: np.ndarray | None, config):
    from IVIMEstimatorLib.motion import motion_correct

    result = motion_correct(series, mask=mask, config=config, progress=_progress)
    log.info(
        "motion correction: displacement per round %s mm; kept round %d",
        ", ".join(f"{d:.3f}" for d in result.displacements_mm),
        result.chosen_round,
    )
    return result


def cmd_register(args: argparse.Namespace) -> None:
    import SimpleITK as sitk

    from IVIMEstimatorLib.motion import MotionConfig

    motion = MotionConfig(rounds=args.rounds)
    _check_output_file(args.out, [args.dwi, args.mask, args.bvals_file])
    if not args.out.name.lower().endswith(VOLUME_SUFFIXES):
        raise InputError(f"cannot write {args.out.name}: use one of {', '.join(VOLUME_SUFFIXES)}")
    if args.transforms_dir is not None and args.transforms_dir.exists() and not args.transforms_dir.is_dir():
        raise InputError(f"--transforms-dir {args.transforms_dir} is a file")
    series = read_series_array(args.dwi, _bvalues_argument(args))
    result = _motion_correct(series, _read_mask(args.mask, series, args.dwi), motion)
    written = write_series_array(result.series, args.out)
    log.info("wrote %s", written)
    if args.transforms_dir is not None:
        args.transforms_dir.mkdir(parents=True, exist_ok=True)
        for index, transform in enumerate(result.transforms):
            sitk.WriteTransform(transform, str(args.transforms_dir / f"{index:04d}.tfm"))
        log.info(
            "wrote %d transforms (volume -> template, as given to SimpleITK.Resample) to %s",
            len(result.transforms),
            args.transforms_dir,
        )


def cmd_fit(args: argparse.Namespace) -> None:
    from IVIMEstimatorLib.fits.model import IvimModel
    from IVIMEstimatorLib.map_logic import EXPORT_FORMATS, EstimateConfig, automatic_mask, select_bvalues, staged_files
    from IVIMEstimatorLib.motion import MotionConfig
    from IVIMEstimatorLib.noise import background_noise_sd

    config = from_arguments(
        EstimateConfig,
        args,
        model=None if args.model is None else str(args.model),
        motion=MotionConfig(rounds=args.rounds),
    )
    inputs = [args.dwi, args.mask, args.registration_mask, args.bvals_file, args.model]
    earlier = _earlier_fit(args.outdir, args.overwrite, inputs)
    series = read_series_array(args.dwi, _bvalues_argument(args))
    if series.bvalues is None:
        raise InputError(f"{args.dwi} stores no b-values: give --bvals or --bvals-file")
    series = select_bvalues(series, config.bvalue_set)
    mask = _read_mask(args.mask, series, args.dwi)
    noise_sd = args.noise_sd if args.noise_sd is not None else background_noise_sd(series.volumes)
    # the estimator (network read and checked against the b-values) before the registration, which takes minutes
    estimator = IvimModel(series.bvalues, config.method, config.model, config.prior, config.device)
    if mask is None and config.auto_mask:
        mask = automatic_mask(series)
    if config.motion_correction:
        series = _motion_correct(series, _read_mask(args.registration_mask, series, args.dwi), config.motion).series
    log.info(
        "fitting %d voxels x %d b-values with %s",
        int(np.prod(series.volumes.shape[1:])) if mask is None else int(mask.sum()),
        series.volumes.shape[0],
        config.method,
    )
    fitted = estimator.fit(series.signals, mask, progress=_progress_in_tenths(), noise_sd=noise_sd)
    if fitted.noise is not None:
        log.info("noise SD %.4g (%s)", fitted.noise.sd, fitted.noise.source)
    maps = fitted.maps()
    with staged_files(args.outdir, replace=earlier) as staging:  # all maps or none, never mixed with earlier ones
        for name, values in maps.items():
            write_volume_array(values, series.geometry, staging / f"{name}{EXPORT_FORMATS[args.file_format]}")
        if fitted.warnings:  # logged by the fit; kept beside the maps for whoever reads them later
            (staging / WARNINGS_FILE).write_text("".join(f"{warning}\n" for warning in fitted.warnings))
    if earlier:
        log.info("replaced %d files of an earlier fit", len(earlier))
    log.info("wrote %s to %s (D, D* in mm²/s)", ", ".join(maps), args.outdir)


#: Written beside the maps when the fit has warnings (``IvimFit.warnings``), one per line.
WARNINGS_FILE = "warnings.txt"


def cmd_train(args: argparse.Namespace) -> None:
    from IVIMEstimatorLib.training.trainer import TrainingConfig, describe_snr, train

    config = from_arguments(
        TrainingConfig,
        args,
        bvalues=tuple(parse_bvalues(args.bvals, source="--bvals")),
        snr_low=args.snr_range[0],
        snr_high=args.snr_range[1],
    )
    config.validate()
    curve = args.out.with_suffix(".loss.png")
    _check_output_file(args.out)
    _check_output_file(curve)
    _, history = train(config, out=args.out, device=args.device, progress=_progress)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot(history["epoch"], history["train_loss"], "o-", label="training")
    axis.plot(history["epoch"], history["val_loss"], "s-", label="validation")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    axis.set_yscale("log")
    axis.set_title(f"{args.method}, b = {args.bvals} s/mm², prior {args.prior}, {describe_snr(config)}")
    axis.legend()
    figure.tight_layout()
    figure.savefig(curve, dpi=100)
    plt.close(figure)
    log.info("wrote %s and %s", args.out, curve)


def cmd_demo(args: argparse.Namespace) -> None:
    from IVIMEstimatorLib.demo import run_demo

    paths = run_demo(args.sample_dir, args.outdir, progress=_progress)
    log.info("wrote %d files to %s", len(paths), args.outdir)


def _rounds(text: str) -> tuple[int, int]:
    """``MIN,MAX`` as two whole numbers (their range is checked by ``motion.MotionConfig``)."""
    try:
        low, high = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX rounds such as 6,10, got {text!r}") from None
    return low, high


def _export_format(text: str) -> str:
    """A map format's name (``map_logic.EXPORT_FORMATS``), also given as its suffix (``.nii.gz`` -> ``nifti``)."""
    from IVIMEstimatorLib.map_logic import EXPORT_FORMATS

    return next((name for name, suffix in EXPORT_FORMATS.items() if text == suffix), text)


def _add_bvalue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bvals", help="b-values in s/mm², comma separated (default: those stored with the data)")
    parser.add_argument("--bvals-file", type=Path, help="file of b-values (FSL .bval style)")


def _add_rounds_option(parser: argparse.ArgumentParser) -> None:
    from IVIMEstimatorLib.motion import MotionConfig

    rounds = settings_field(MotionConfig, "rounds")
    parser.add_argument(
        "--rounds",
        type=_rounds,
        default=rounds.default,
        help=f"{rounds.setting.help}; default {','.join(str(value) for value in rounds.default)}",
    )


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="ivimestimator", parents=[common], description="IVIM maps (f, D, D*) from diffusion-weighted MR series."
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    sample = sub.add_parser(
        "sample-data",
        parents=[common],
        help="write the placenta phantom sample data",
        description="Write a placenta-like IVIM DWI series (b = 0,10,20,50,80,100,150,200,300,500 "
        "s/mm², Rician noise) with its ground-truth f, D, D* maps.",
    )
    sample.add_argument("outdir", type=Path, help="output folder (created)")
    sample.add_argument("--snr", type=positive_float, default=30.0, help="SNR at b = 0 in the placenta (default 30)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.set_defaults(command=cmd_sample_data)

    from IVIMEstimatorLib.map_logic import EstimateConfig, ExportSettings
    from IVIMEstimatorLib.training.config import TrainingConfig

    fit_parser = sub.add_parser(
        "fit",
        parents=[common],
        help="IVIM maps of a 4D diffusion series",
        description="Fit f, D and D* (mm²/s) voxel by voxel and write f, D, Dstar, S0 (and SD "
        "maps for bayes) with the input geometry, all of them or (on an error or "
        "Ctrl-C) none.",
    )
    fit_parser.add_argument("dwi", type=Path, help="4D NIfTI/NRRD series, or a folder of 3D volumes")
    fit_parser.add_argument("outdir", type=Path, help="output folder: new or empty (created)")
    fit_parser.add_argument(
        "--overwrite",
        action="store_true",
        help="OUTDIR may hold the maps of an earlier fit: they are replaced by the new ones (other files stay)",
    )
    _add_bvalue_options(fit_parser)
    fit_parser.add_argument("--model", type=Path, help="network model file (default: the shipped one for the b-values)")
    fit_parser.add_argument("--mask", type=Path, help="mask volume (non-zero = fit), on the series' grid")
    fit_parser.add_argument(
        "--noise-sd",
        type=positive_float,
        help="noise SD of the series in its signal units (default: measured from its background, else from the "
        "fit residuals, and reported)",
    )
    add_arguments(fit_parser, EstimateConfig)
    export_format = settings_field(ExportSettings, "file_format")
    fit_parser.add_argument(export_format.option, **argument_keywords(export_format) | {"type": _export_format})
    fit_parser.add_argument(
        "--registration-mask", type=Path, help="mask restricting the registration metric (default: whole image)"
    )
    _add_rounds_option(fit_parser)
    fit_parser.set_defaults(command=cmd_fit)

    register_parser = sub.add_parser(
        "register",
        parents=[common],
        help="motion-correct a diffusion series",
        description="Register every volume to an iteratively refined mean template (rigid then affine, Mattes mutual "
        "information) and write the registered series with the input geometry; optionally one ITK .tfm "
        "per volume (0000.tfm, 0001.tfm, ... in volume order), each the transform that resamples that "
        "volume onto the template.",
    )
    register_parser.add_argument("dwi", type=Path, help="4D NIfTI/NRRD series, or a folder of 3D volumes")
    register_parser.add_argument("out", type=Path, help="registered 4D series to write (.nii.gz, .nrrd, .seq.nrrd)")
    _add_bvalue_options(register_parser)
    register_parser.add_argument("--mask", type=Path, help="mask restricting the metric, on the series' grid")
    register_parser.add_argument("--transforms-dir", type=Path, help="folder for the per-volume .tfm files")
    _add_rounds_option(register_parser)
    register_parser.set_defaults(command=cmd_register)

    train_parser = sub.add_parser(
        "train",
        parents=[common],
        help="train a network on synthetic signals",
        description="Train SCDNN, MLP or IVIM-NET for a b-value protocol on synthetic "
        "signals (prior, Rician SNR) and write the model file and its loss "
        "curve (PNG).",
    )
    train_parser.add_argument("--bvals", required=True, help="protocol b-values in s/mm², starting at 0")
    add_arguments(train_parser, TrainingConfig, skip=("snr_low", "snr_high"))
    low, high = settings_field(TrainingConfig, "snr_low"), settings_field(TrainingConfig, "snr_high")
    train_parser.add_argument(
        "--snr-range",
        type=snr_range,
        default=(low.default, high.default),
        metavar="LOW,HIGH",
        help=f"SNRs at b = 0 of the synthetic signals, drawn log-uniformly (the network is told each one; "
        f"LOW = HIGH: one SNR); each {low.setting.minimum:g}-{low.setting.maximum:g}; default "
        f"{low.default:g},{high.default:g}",
    )
    train_parser.add_argument("--device", **argument_keywords(settings_field(EstimateConfig, "device")))
    train_parser.add_argument("--out", type=Path, required=True, help="model file to write (.pt)")
    train_parser.set_defaults(command=cmd_train)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run the module's logic on the placenta sample data",
        description="Fit the placenta sample with every method (NRMSE against the truth), then "
        "motion correction + SCDNN, export the maps and plot them and one voxel's fit "
        "(see IVIMEstimatorLib.demo).",
    )
    demo.add_argument("sample_dir", type=Path, help="folder written by `ivimestimator sample-data`")
    demo.add_argument("outdir", type=Path, help="output folder (created)")
    demo.set_defaults(command=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
