"""``ivimestimator`` output paths and bad input, with real files: outputs never replace an input, a fit's
output folder holds one complete map set (never mixed with an earlier run's, never partial), and bad paths
or values are refused with exit code 2 and one line before any work."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import script

from FastMRICommon.errors import InputError
from FastMRICommon.volume_files import read_volume_array, write_volume_array
from IVIMEstimatorLib.cli import main
from IVIMEstimatorLib.diffusion_series import write_series_array
from IVIMEstimatorLib.phantoms.phantom import placenta_phantom


@pytest.fixture(scope="module")
def series_file(tmp_path_factory) -> Path:
    """A small placenta series as a 4D NRRD (b-values in its index)."""
    phantom = placenta_phantom(shape=(2, 24, 24), snr=50.0, seed=8)
    return write_series_array(phantom.series, tmp_path_factory.mktemp("series") / "dwi.seq.nrrd")


@pytest.fixture(scope="module")
def series_folder(tmp_path_factory) -> Path:
    """The same kind of series as a folder of 3D volumes with a .bval file."""
    phantom = placenta_phantom(shape=(2, 24, 24), snr=50.0, seed=8)
    folder = tmp_path_factory.mktemp("folder_series")
    for index, volume in enumerate(phantom.series.volumes):
        write_volume_array(volume, phantom.series.geometry, folder / f"b{index:02d}.nrrd")
    (folder / "dwi.bval").write_text(" ".join(f"{b:g}" for b in phantom.series.bvalues))
    return folder


def ivimestimator(capsys, *arguments: str) -> tuple[int, list[str]]:
    """Run the command line in this process: (exit code, lines written to stderr, log lines included)."""
    code = main([str(argument) for argument in arguments])
    return code, capsys.readouterr().err.strip().splitlines()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
    }


def test_register_refuses_to_write_over_its_input(capsys, series_file):
    before = series_file.read_bytes()
    code, lines = ivimestimator(capsys, "register", series_file, series_file)
    assert (code, lines) == (
        2,
        [
            f"ivimestimator: error: the output {series_file} is the input {series_file}: write "
            "the output to another file"
        ],
    )
    assert series_file.read_bytes() == before
    code, lines = ivimestimator(capsys, "register", series_file, series_file.parent)
    assert (code, lines) == (
        2,
        [f"ivimestimator: error: the output {series_file.parent} is a folder: give a file name"],
    )
    code, lines = ivimestimator(capsys, "register", series_file, series_file.parent / "registered.png")
    assert code == 2 and len(lines) == 1 and "use one of .nrrd" in lines[0]


def test_fit_refuses_to_write_into_its_input_folder_series(capsys, series_folder):
    before = snapshot(series_folder)
    for extra in ([], ["--overwrite"]):
        code, lines = ivimestimator(capsys, "fit", series_folder, series_folder, "--method", "nlls", *extra)
        assert (code, lines) == (
            2,
            [
                f"ivimestimator: error: the output folder {series_folder} is the input "
                f"{series_folder}: choose another folder"
            ],
        )
    assert snapshot(series_folder) == before


def test_fit_refuses_an_output_folder_that_is_a_file(capsys, series_file, tmp_path):
    (tmp_path / "maps").write_text("not a folder")
    code, lines = ivimestimator(capsys, "fit", series_file, tmp_path / "maps", "--method", "nlls")
    assert (code, lines) == (2, [f"ivimestimator: error: the output folder {tmp_path / 'maps'} is a file"])
    code, lines = ivimestimator(capsys, "fit", series_file, tmp_path / "maps" / "inner", "--method", "nlls")
    assert code == 2 and lines == [
        f"ivimestimator: error: the output folder {tmp_path / 'maps' / 'inner'} cannot be "
        f"created: {tmp_path / 'maps'} is a file"
    ]


def test_a_second_fit_replaces_the_first_only_with_overwrite(capsys, series_file, tmp_path):
    """Bayes writes SD maps; an NLLS fit into the same folder must not leave them beside its own maps."""
    maps = tmp_path / "maps"
    code, lines = ivimestimator(capsys, "fit", series_file, maps, "--method", "bayes", "--prior", "placenta")
    assert code == 0, lines
    first = snapshot(maps)
    assert sorted(first) == sorted(f"{key}.nrrd" for key in ("f", "D", "Dstar", "S0", "f_sd", "D_sd", "Dstar_sd"))
    (maps / "notes.txt").write_text("the user's own file")
    code, lines = ivimestimator(capsys, "fit", series_file, maps, "--method", "nlls")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"ivimestimator: error: the output folder {maps} is not empty (D.nrrd, D_sd.nrrd, ")
    assert lines[0].endswith("choose an empty folder, or pass --overwrite to replace the maps of an earlier fit")
    assert snapshot(maps) == first | {"notes.txt": b"the user's own file"}
    code, lines = ivimestimator(
        capsys, "fit", series_file, maps, "--method", "nlls", "--overwrite", "--format", ".nii.gz"
    )
    assert code == 0, lines
    assert sorted(snapshot(maps)) == ["D.nii.gz", "Dstar.nii.gz", "S0.nii.gz", "f.nii.gz", "notes.txt"]
    f, _ = read_volume_array(maps / "f.nii.gz")
    assert np.isfinite(f).any()


def test_a_failed_or_interrupted_map_set_leaves_nothing_behind(tmp_path):
    """What ``fit`` and the module's *Export* write through: a KeyboardInterrupt (Ctrl-C) or an error after some
    maps are written leaves neither those maps nor a half-replaced earlier set; a completed block publishes all."""
    from IVIMEstimatorLib.map_logic import staged_files

    geometry = placenta_phantom(shape=(2, 8, 8)).series.geometry
    maps = tmp_path / "maps"
    earlier = [
        write_volume_array(np.full((2, 8, 8), value, np.float32), geometry, maps / f"{key}.nrrd")
        for value, key in enumerate(("f", "D", "f_sd"))
    ]
    before = snapshot(maps)
    for failure in (KeyboardInterrupt(), InputError("cannot write")):
        with pytest.raises(type(failure)):
            with staged_files(maps, replace=earlier) as staging:
                write_volume_array(np.zeros((2, 8, 8), np.float32), geometry, staging / "f.nrrd")
                write_volume_array(np.zeros((2, 8, 8), np.float32), geometry, staging / "D.nrrd")
                raise failure
        assert snapshot(maps) == before
        assert sorted(path.name for path in maps.iterdir()) == ["D.nrrd", "f.nrrd", "f_sd.nrrd"]
    with pytest.raises(KeyboardInterrupt):
        with staged_files(tmp_path / "new") as staging:
            write_volume_array(np.zeros((2, 8, 8), np.float32), geometry, staging / "f.nrrd")
            raise KeyboardInterrupt
    assert not (tmp_path / "new").exists()  # a folder the run created goes too
    with staged_files(maps, replace=earlier) as staging:
        write_volume_array(np.ones((2, 8, 8), np.float32), geometry, staging / "f.nrrd")
    assert sorted(path.name for path in maps.iterdir()) == ["f.nrrd"]
    np.testing.assert_array_equal(read_volume_array(maps / "f.nrrd")[0], 1.0)


def test_ctrl_c_during_the_map_export_leaves_no_maps(tmp_path):
    """A user's Ctrl-C (SIGINT) while ``fit`` writes its maps: exit code 130 and no output folder at all. The
    signal is sent as soon as the first map file appears (in the staging folder, since maps are staged)."""
    phantom = placenta_phantom(shape=(6, 96, 96), snr=50.0, seed=9)
    dwi = write_series_array(phantom.series, tmp_path / "dwi.seq.nrrd")
    maps = tmp_path / "maps"
    process = subprocess.Popen(
        [script("ivimestimator"), "fit", str(dwi), str(maps), "--method", "mlp", "--format", ".nii.gz"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    staged: list[Path] = []
    while process.poll() is None and not staged:
        try:
            staged = [path for path in maps.rglob("*.nii.gz") if path.is_file()] if maps.is_dir() else []
        except FileNotFoundError:  # a temporary file or folder of the export vanished while it was listed
            staged = []
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=300)[1]
    if not staged:
        pytest.skip("the export finished before a map file was seen: no interrupt to test on this machine")
    assert process.returncode == 130 and stderr.strip().splitlines()[-1] == "ivimestimator: cancelled"
    assert not maps.exists()


def test_train_refuses_too_few_samples_and_a_folder_as_model_file(capsys, tmp_path):
    code, lines = ivimestimator(
        capsys, "train", "--bvals", "0,20,50,150,300,500", "--samples", "1", "--out", tmp_path / "model.pt"
    )
    assert (code, lines) == (
        2,
        [
            "ivimestimator: error: training needs at least 1280 synthetic signals (10 batches of "
            "128: 90% to train on, 10% to validate), got 1"
        ],
    )
    (tmp_path / "models").mkdir()
    code, lines = ivimestimator(
        capsys,
        "train",
        "--method",
        "mlp",
        "--bvals",
        "0,20,50,150,300,500",
        "--samples",
        "3000",
        "--epochs",
        "1",
        "--out",
        tmp_path / "models",
    )
    assert (code, lines) == (
        2,
        [f"ivimestimator: error: the output {tmp_path / 'models'} is a folder: give a file name"],
    )
    assert list((tmp_path / "models").iterdir()) == []


def test_fit_and_register_refuse_outputs_inside_a_file(capsys, series_file, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    code, lines = ivimestimator(capsys, "register", series_file, blocker / "registered.nrrd")
    assert (code, lines) == (
        2,
        [f"ivimestimator: error: the output {blocker / 'registered.nrrd'} cannot be created: {blocker} is a file"],
    )


# -- settings: one home each (FastMRICommon.settings), the same defaults, ranges and checks as the module -------
BVALS = "0,20,50,150,300,500"


def test_the_command_line_defaults_are_the_settings_fields():
    """``fit``'s and ``train``'s options are made from the fields the module's parameter node is made from
    (``EstimateConfig``, ``ExportSettings``, ``TrainingConfig``; ``MotionConfig.rounds``): same defaults."""
    from FastMRICommon.settings import settings_fields
    from IVIMEstimatorLib.cli import build_parser
    from IVIMEstimatorLib.map_logic import EstimateConfig, ExportSettings
    from IVIMEstimatorLib.motion import MotionConfig
    from IVIMEstimatorLib.training.config import TrainingConfig

    parser = build_parser()
    fit = parser.parse_args(["fit", "dwi.nii.gz", "maps"])
    for field in settings_fields(EstimateConfig):
        assert getattr(fit, field.name) == field.default, field.name
    assert (fit.file_format, fit.rounds) == (ExportSettings().file_format, MotionConfig().rounds)
    assert (fit.prior, fit.auto_mask, fit.bvalue_set, fit.file_format, fit.rounds) == (
        "placenta",
        True,
        "all",
        "nrrd",
        (6, 10),
    )
    train = parser.parse_args(["train", "--bvals", BVALS, "--out", "model.pt"])
    for field in settings_fields(TrainingConfig):
        if field.name not in ("snr_low", "snr_high"):  # one option for both: --snr-range
            assert getattr(train, field.name) == field.default, field.name
    assert train.snr_range == (TrainingConfig.snr_low, TrainingConfig.snr_high) == (8.0, 150.0)
    assert (train.method, train.prior, train.device) == ("scdnn", "placenta", fit.device)
    assert parser.parse_args(["train", "--bvals", BVALS, "--snr-range", "20,40", "--out", "m.pt"]).snr_range == (
        20.0,
        40.0,
    )
    chosen = parser.parse_args(
        [
            "fit",
            "dwi.nii.gz",
            "maps",
            "--no-auto-mask",
            "--bvalue-set",
            "accelerated",
            "--motion-correct",
            "--format",
            ".nii.gz",
            "--rounds",
            "2,3",
        ]
    )
    assert (chosen.auto_mask, chosen.bvalue_set, chosen.motion_correction, chosen.file_format, chosen.rounds) == (
        False,
        "accelerated",
        True,
        "nifti",
        (2, 3),
    )  # the format by name or by suffix
    assert parser.parse_args(["fit", "dwi.nii.gz", "maps", "--format", "nifti"]).file_format == "nifti"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["train", "--bvals", BVALS, "--snr-range", "8,3000", "--out", "m.pt"],
            "snr high must be between 2 and 1000; got 3000",
        ),
        (
            ["train", "--bvals", BVALS, "--snr-range", "1,30", "--out", "m.pt"],
            "snr low must be between 2 and 1000; got 1",
        ),
        (["train", "--bvals", BVALS, "--epochs", "0", "--out", "m.pt"], "epochs must be between 1 and 1000; got 0"),
        (["train", "--bvals", BVALS, "--seed", "-1", "--out", "m.pt"], "seed must be between 0 and 2147483647; got -1"),
        (
            ["fit", "dwi.nii.gz", "maps", "--rounds", "3,2"],
            "rounds must be (min, max) with 1 <= min <= max, got (3, 2)",
        ),
        (["register", "dwi.nii.gz", "out.nrrd", "--rounds", "0,4"], "rounds must be (min, max) with 1 <= min <= max"),
    ],
)
def test_settings_out_of_range_exit_2_naming_the_setting_before_any_work(capsys, tmp_path, arguments, message):
    """The ranges the module's parameter node offers are the command line's too, checked by the settings
    classes before any file is read (here none exists) or written."""
    code, lines = ivimestimator(
        capsys, *[tmp_path / a if a.endswith((".gz", ".pt", ".nrrd")) or a == "maps" else a for a in arguments]
    )
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "arguments",
    [["--prior", "lung"], ["--format", "png"], ["--bvalue-set", "some"], ["--device", "tpu"], ["--rounds", "6"]],
)
def test_values_outside_a_settings_choices_are_usage_errors(capsys, arguments):
    with pytest.raises(SystemExit) as exit_code:
        main(["fit", "dwi.nii.gz", "maps", *arguments])
    assert exit_code.value.code == 2 and f"argument {arguments[0]}: " in capsys.readouterr().err


def test_fit_masks_the_object_unless_told_and_fits_the_accelerated_subset(capsys, series_file, tmp_path):
    """Without ``--mask``, ``fit`` fits the object only (``--auto-mask``, the module's default); ``--no-auto-mask``
    fits every voxel; ``--bvalue-set accelerated`` gives the maps of the series' accelerated volumes alone."""
    from IVIMEstimatorLib.diffusion_series import DiffusionSeries
    from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES

    phantom = placenta_phantom(shape=(2, 24, 24), snr=50.0, seed=8)  # what series_file holds
    for extra, fitted in (([], phantom.labels > 0), (["--no-auto-mask"], np.ones(phantom.labels.shape, bool))):
        code, lines = ivimestimator(
            capsys, "fit", series_file, tmp_path / f"maps{len(extra)}", "--method", "nlls", *extra
        )
        assert code == 0, lines
        f, _ = read_volume_array(tmp_path / f"maps{len(extra)}" / "f.nrrd")
        np.testing.assert_array_equal(np.isfinite(f), fitted)
    keep = np.isin(phantom.series.bvalues, ACCELERATED_BVALUES)
    accelerated = write_series_array(
        DiffusionSeries(phantom.series.volumes[keep], phantom.series.bvalues[keep], phantom.series.geometry),
        tmp_path / "accelerated.seq.nrrd",
    )
    maps = {}
    for name, source, extra in (("subset", series_file, ["--bvalue-set", "accelerated"]), ("alone", accelerated, [])):
        code, lines = ivimestimator(capsys, "fit", source, tmp_path / name, "--method", "nlls", *extra)
        assert code == 0, lines
        maps[name] = read_volume_array(tmp_path / name / "D.nrrd")[0]
    np.testing.assert_array_equal(maps["subset"], maps["alone"])
    assert not np.array_equal(maps["subset"], read_volume_array(tmp_path / "maps0" / "D.nrrd")[0])
