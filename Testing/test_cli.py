"""The console scripts as a user runs them: help, exit codes, one-line errors, real files."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import run_command as run

from FastMRICommon.cli import check_outputs
from FastMRICommon.errors import InputError
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.volume_files import read_volume_array, write_volume_array


@pytest.fixture(params=["fastmrrecon", "ivimestimator"])
def command(request):
    return request.param


def test_help_lists_commands(command):
    result = run(command, "--help")
    assert result.returncode == 0 and "sample-data" in result.stdout
    result = run(command, "sample-data", "--help")
    assert result.returncode == 0 and "outdir" in result.stdout


def test_no_command_is_bad_input(command):
    assert run(command).returncode == 2


def test_usage_errors_exit_2(command):
    result = run(command, "sample-data")
    assert result.returncode == 2 and "required" in result.stderr


@pytest.mark.parametrize(
    "arguments",
    [
        ["-v", "sample-data", "out"],
        ["sample-data", "-v", "out"],
        ["--verbose", "sample-data", "out"],
        ["sample-data", "out"],
    ],
)
def test_verbose_counts_before_and_after_the_command(command, arguments):
    from FastMRReconLib.cli import build_parser as recon_parser
    from IVIMEstimatorLib.cli import build_parser as ivim_parser

    parser = {"fastmrrecon": recon_parser, "ivimestimator": ivim_parser}[command]()
    assert getattr(parser.parse_args(arguments), "verbose", False) == (len(arguments) == 3)


def test_outputs_may_replace_files_but_never_an_input(tmp_path):
    source = tmp_path / "in.nrrd"
    source.write_bytes(b"volume")
    (tmp_path / "old.nrrd").write_bytes(b"an earlier output")
    check_outputs([source], [tmp_path / "new.nrrd", tmp_path / "old.nrrd"])
    os.link(source, tmp_path / "hard.nrrd")
    (tmp_path / "soft.nrrd").symlink_to(source)
    for output in (source, tmp_path / "x" / ".." / "in.nrrd", tmp_path / "hard.nrrd", tmp_path / "soft.nrrd"):
        with pytest.raises(InputError, match="is the input .*in.nrrd: write the output to another file"):
            check_outputs([tmp_path / "other.nrrd", source], [tmp_path / "fine.nrrd", output])
    with pytest.raises(InputError, match="is a folder"):
        check_outputs([source], [tmp_path])


def test_missing_input_is_one_clear_line(tmp_path):
    result = run(
        "fastmrrecon", "simulate", str(tmp_path / "absent.nrrd"), str(tmp_path / "out.nrrd"), "--acceleration", "2"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"fastmrrecon: error: no such image file: {tmp_path / 'absent.nrrd'}"
    assert not (tmp_path / "out.nrrd").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["simulate", "in.nrrd", "out.nrrd", "--acceleration", "0"], "acceleration must be between 1 and 16; got 0"),
        (["simulate", "in.nrrd", "out.nrrd", "--acceleration", "2", "--seed", "-1"], "seed must be between 0 and"),
        (
            ["simulate", "in.nrrd", "out.nrrd", "--acceleration", "2", "--center-fraction", "0.9"],
            "center fraction must be between 0.01 and 0.5",
        ),
        (["simulate", "in.nrrd", "out.nrrd", "--acceleration", "2", "--coils", "64"], "coils must be between 1 and 32"),
        (
            ["simulate", "in.nrrd", "out.nrrd", "--acceleration", "2", "--resolution", "1", "0.05"],
            "resolution columns must be between 0.1 and 1",
        ),
        (["sample-data", "out", "--seed", "-3"], "seed must be between 0 and"),
        (
            ["roi-stats", "in.nrrd", "--roi1", "1,1,0", "--roi2", "2,2,0", "--background", "3,3,0", "--size", "1"],
            "roi size must be between 2 and 32; got 1",
        ),
        (["reconstruct", "in.nrrd", "out.nrrd", "--noise-sd", "1e13"], "noise sd must be between 0 and 1e+12"),
    ],
)
def test_bad_option_value_exits_2_before_any_file_is_read(tmp_path, arguments, message):
    """Settings out of their range (FastMRICommon.settings, one home each) are bad input: exit 2 with one line
    naming the setting, checked before the (here missing) input is read."""
    result = run("fastmrrecon", *[str(tmp_path / a) if a.endswith(".nrrd") or a == "out" else a for a in arguments])
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_simulate_help_shows_each_settings_range_and_default():
    from FastMRReconLib.cli import build_parser

    text = " ".join(run("fastmrrecon", "simulate", "--help").stdout.split())
    for expected in (
        "(1-16)",
        "(0.01-0.5); default 0.08",
        "(1-32); default 8",
        "(1-8); default 1",
        "(1-1e+06); default 30",
        "(0.1-1)",
        "(0-2147483647); default 0",
        "{equispaced,variable-density}",
        "{sense,rss}",
    ):
        assert expected in text, expected
    assert "(2-32); default 4" in " ".join(run("fastmrrecon", "roi-stats", "--help").stdout.split())
    arguments = build_parser().parse_args(["simulate", "in", "out", "--acceleration", "3"])
    assert (arguments.acceleration, arguments.center_fraction, arguments.seed, arguments.resolution) == (
        3.0,
        0.08,
        0,
        (1.0, 1.0),
    )
    recon = build_parser().parse_args(["reconstruct", "in", "out"])
    assert (recon.device, recon.precision, recon.strength, recon.noise_sd) == ("auto", "auto", 1.0, None)


def test_simulate_writes_with_input_geometry(tmp_path):
    geometry = VolumeGeometry((0.9, 0.9, 4.0), (1.0, 2.0, 3.0), ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)))
    y, x = np.mgrid[-1:1:40j, -1:1:48j]
    image = np.repeat(((x**2 + y**2) < 0.6)[None] * 300.0, 2, axis=0).astype(np.float32)
    write_volume_array(image, geometry, tmp_path / "full.nii.gz")
    result = run(
        "fastmrrecon",
        "simulate",
        str(tmp_path / "full.nii.gz"),
        str(tmp_path / "fast.nrrd"),
        "--acceleration",
        "3",
        "--coils",
        "4",
        "--seed",
        "5",
        "--combine",
        "rss",
    )
    assert result.returncode == 0, result.stderr
    fast, fast_geometry = read_volume_array(tmp_path / "fast.nrrd")
    assert fast.shape == image.shape and fast_geometry.matches(geometry, 1e-4)
    assert not np.allclose(fast, image, atol=10.0)
    # SENSE needs >= 4 calibration lines: 8% of 40 lines is 3, which is refused with what to do
    result = run(
        "fastmrrecon",
        "simulate",
        str(tmp_path / "full.nii.gz"),
        str(tmp_path / "sense.nrrd"),
        "--acceleration",
        "3",
        "--coils",
        "4",
    )
    assert result.returncode == 2 and "--center-fraction" in result.stderr
    assert not (tmp_path / "sense.nrrd").exists()
    result = run(
        "fastmrrecon",
        "simulate",
        str(tmp_path / "full.nii.gz"),
        str(tmp_path / "sense.nrrd"),
        "--acceleration",
        "3",
        "--coils",
        "4",
        "--center-fraction",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    # half the k-space matrix acquired: Gibbs overshoot at the disc's edge (no noise to hide it)
    result = run(
        "fastmrrecon",
        "simulate",
        str(tmp_path / "full.nii.gz"),
        str(tmp_path / "low.nrrd"),
        "--acceleration",
        "1",
        "--coils",
        "4",
        "--snr",
        "1e6",
        "--resolution",
        "0.5",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    assert read_volume_array(tmp_path / "low.nrrd")[0].max() > 1.05 * 300
    result = run(
        "fastmrrecon",
        "simulate",
        str(tmp_path / "full.nii.gz"),
        str(tmp_path / "bad.nrrd"),
        "--acceleration",
        "2",
        "--resolution",
        "0",
        "1",
    )
    assert result.returncode == 2 and "resolution rows must be between 0.1 and 1; got 0" in result.stderr


def test_constant_input_is_refused(tmp_path):
    write_volume_array(np.ones((2, 16, 16), np.float32), VolumeGeometry(), tmp_path / "flat.nrrd")
    result = run(
        "fastmrrecon", "simulate", str(tmp_path / "flat.nrrd"), str(tmp_path / "o.nrrd"), "--acceleration", "2"
    )
    assert result.returncode == 2 and "constant" in result.stderr and "Traceback" not in result.stderr


def test_ivim_sample_data(tmp_path):
    result = run("ivimestimator", "sample-data", str(tmp_path / "ivim"), "--snr", "50")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ivim" / "placenta_dwi.seq.nrrd").is_file()
    assert (tmp_path / "ivim" / "placenta_dwi.bval").is_file()


@pytest.mark.slow
def test_ivim_fit_writes_maps_with_the_series_geometry(tmp_path):
    assert run("ivimestimator", "sample-data", str(tmp_path / "s")).returncode == 0
    result = run(
        "ivimestimator",
        "fit",
        str(tmp_path / "s" / "placenta_dwi.nii.gz"),
        str(tmp_path / "maps"),
        "--method",
        "nlls",
        "--mask",
        str(tmp_path / "s" / "placenta_labels.nrrd"),
    )
    assert result.returncode == 0, result.stderr
    f, geometry = read_volume_array(tmp_path / "maps" / "f.nrrd")
    truth, truth_geometry = read_volume_array(tmp_path / "s" / "placenta_truth_f.nrrd")
    labels, _ = read_volume_array(tmp_path / "s" / "placenta_labels.nrrd")
    assert geometry.matches(truth_geometry) and np.isnan(f[labels == 0]).all()
    placenta = labels == 1
    assert abs(np.nanmedian(f[placenta]) - np.median(truth[placenta])) < 0.05
    bad = run(
        "ivimestimator", "fit", str(tmp_path / "s" / "placenta_dwi.nii.gz"), str(tmp_path / "m2"), "--bvals", "0,10,20"
    )
    assert bad.returncode == 2 and "3 b-values given for 10 volumes" in bad.stderr


def test_ivim_train_writes_model_and_loss_curve(tmp_path):
    result = run(
        "ivimestimator",
        "train",
        "--method",
        "mlp",
        "--bvals",
        "0,20,50,150,300,500",
        "--samples",
        "3000",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "mlp.pt"),
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlp.pt").is_file() and (tmp_path / "mlp.loss.png").stat().st_size > 1000
    bad = run("ivimestimator", "train", "--bvals", "20,0,50", "--out", str(tmp_path / "x.pt"))
    assert bad.returncode == 2 and "start at 0" in bad.stderr
