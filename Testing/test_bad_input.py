"""Issue 22: bad input gets one line on stderr and exit code 2, never a traceback, and never costs the user a
file: outputs may not overwrite inputs, and volumes are written atomically (a failed or cancelled write
leaves neither a partial file nor a temporary one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from conftest import run_command as run

from FastMRICommon.errors import InputError, ModelFileError
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.model_files import ModelFile, load_model_file, save_model_file
from FastMRICommon.volume_files import read_volume_array, write_volume_array

PREVIOUS_MODEL = REPO / "FastMRRecon" / "Resources" / "Models" / "FastMRRecon" / "fastmrrecon_head_multicontrast.pt"
GEOMETRY = VolumeGeometry((0.9, 0.9, 3.0), (1.0, 2.0, 3.0))


def head(noise_floor: float = 0.0, slices: int = 2) -> np.ndarray:
    """A bright disc (300) on a dark background, plus zero-mean Gaussian noise of SD ``noise_floor``."""
    y, x = np.mgrid[-1:1:48j, -1:1:48j]
    image = (((x**2 + y**2) < 0.6) * 200.0 + ((x - 0.2) ** 2 + y**2 < 0.05) * 100.0).astype(np.float32)
    noise = np.random.default_rng(0).normal(0.0, noise_floor, (slices, 48, 48)) if noise_floor else 0.0
    return (image[None] + noise).astype(np.float32)


def one_line_error(result, code: int = 2) -> str:
    """The single stderr line of a refused command (asserting the exit code and that there is no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Names in ``folder`` that a write in progress leaves behind (temporary files or folders)."""
    return sorted(name for name in os.listdir(folder) if "partial" in name or name.startswith("TempWrite"))


# ------------------------------------------------------------------------ item 8: outputs never overwrite inputs


@pytest.mark.parametrize(
    "command, options",
    [("simulate", ["--acceleration", "2", "--combine", "rss"]), ("reconstruct", ["--model", str(PREVIOUS_MODEL)])],
)
def test_output_equal_to_the_input_is_refused_and_the_input_kept(tmp_path, command, options):
    write_volume_array(head(), GEOMETRY, tmp_path / "in.nrrd")
    before = (tmp_path / "in.nrrd").read_bytes()
    other_spelling = tmp_path / "sub" / ".." / "in.nrrd"
    (tmp_path / "sub").mkdir()
    result = run("fastmrrecon", command, str(tmp_path / "in.nrrd"), str(other_spelling), *options)
    line = one_line_error(result)
    assert line.startswith("fastmrrecon: error:") and "input" in line and "another file" in line
    assert (tmp_path / "in.nrrd").read_bytes() == before


def test_train_output_over_its_pairs_is_refused(tmp_path):
    pairs = tmp_path / "pairs.npz"
    np.savez(
        pairs,
        input_0=np.ones((32, 32), np.float32),
        reference_0=np.ones((32, 32), np.float32),
        contrast=np.array(["T1w"]),
        acceleration=np.array([2.0]),
        subject=np.array(["s"]),
    )
    before = pairs.read_bytes()
    line = one_line_error(run("fastmrrecon", "train", str(pairs), "--out", str(pairs), "--steps", "1"))
    assert "another file" in line and pairs.read_bytes() == before


def test_a_failed_write_leaves_no_file_and_no_temporary_file(tmp_path):
    with pytest.raises(OSError, match="writing .*empty.nrrd failed"):
        write_volume_array(np.zeros((0, 4, 4), np.float32), GEOMETRY, tmp_path / "empty.nrrd")  # ITK refuses it
    assert os.listdir(tmp_path) == []
    # a failed write does not touch the file it would have replaced
    write_volume_array(head(), GEOMETRY, tmp_path / "kept.nrrd")
    before = (tmp_path / "kept.nrrd").read_bytes()
    with pytest.raises(OSError):
        write_volume_array(np.zeros((0, 4, 4), np.float32), GEOMETRY, tmp_path / "kept.nrrd")
    assert (tmp_path / "kept.nrrd").read_bytes() == before and os.listdir(tmp_path) == ["kept.nrrd"]


@pytest.mark.parametrize(
    "suffix, files",
    [
        (".nrrd", ["v.nrrd"]),
        (".nii.gz", ["v.nii.gz"]),
        (".mha", ["v.mha"]),
        (".nhdr", ["v.nhdr", "v.raw.gz"]),
        (".mhd", ["v.mhd", "v.zraw"]),
    ],
)
def test_every_format_is_written_under_its_own_name_only(tmp_path, suffix, files):
    """The temporary copy keeps the real suffix (the writer picks the format from it), and a detached header
    (.nhdr, .mhd) still names its data file once moved into place."""
    write_volume_array(head(), GEOMETRY, tmp_path / f"v{suffix}")
    assert sorted(os.listdir(tmp_path)) == files
    array, geometry = read_volume_array(tmp_path / f"v{suffix}")
    np.testing.assert_array_equal(array, head()) and geometry.matches(GEOMETRY, 1e-4)
    assert read_volume_array(tmp_path / f"v{suffix}")[1].matches(GEOMETRY, 1e-4)


WRITER = """
import signal
import sys
import numpy as np
# as in a terminal: a shell that starts a job in the background (nohup ... &) leaves SIGINT ignored in it
signal.signal(signal.SIGINT, signal.default_int_handler)
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.volume_files import write_volume_array
volume = np.random.default_rng(0).random((160, 256, 256), dtype=np.float32)  # incompressible: a slow write
print("ready", flush=True)
write_volume_array(volume, VolumeGeometry(), sys.argv[1])
"""


def test_ctrl_c_during_a_write_leaves_no_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "big.nrrd"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 120
        while not leftovers(tmp_path) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until the writer has started on its temporary copy
        assert leftovers(tmp_path), "the writer finished before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0 and "KeyboardInterrupt" in stderr
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------- item 11: magnitude images only


@pytest.mark.parametrize(
    "command, options",
    [("simulate", ["--acceleration", "2", "--combine", "rss"]), ("reconstruct", ["--model", str(PREVIOUS_MODEL)])],
)
def test_negative_input_is_refused_and_a_small_noise_floor_is_not(tmp_path, command, options):
    signed = head() - 150.0  # e.g. a real part or a difference image: half of it negative
    write_volume_array(signed, GEOMETRY, tmp_path / "signed.nrrd")
    result = run("fastmrrecon", command, str(tmp_path / "signed.nrrd"), str(tmp_path / "o.nrrd"), *options)
    line = one_line_error(result)
    assert "negative" in line and "magnitude" in line
    assert not (tmp_path / "o.nrrd").exists()
    floor = head(noise_floor=3.0)  # zero-mean noise in the background: the minimum is about -4% of the 99th percentile
    assert -0.1 < floor.min() / np.percentile(floor, 99) < -0.02
    write_volume_array(floor, GEOMETRY, tmp_path / "floor.nrrd")
    result = run("fastmrrecon", command, str(tmp_path / "floor.nrrd"), str(tmp_path / "o.nrrd"), *options)
    assert result.returncode == 0, result.stderr
    assert read_volume_array(tmp_path / "o.nrrd")[0].shape == floor.shape


@pytest.fixture(scope="module")
def previous_reconstructor():
    from FastMRReconLib.model.reconstructor import Reconstructor

    return Reconstructor.load(PREVIOUS_MODEL, device="cpu")


def test_reconstruct_api_refuses_negative_images_with_the_rule_stated(previous_reconstructor):
    image = head()[0]
    with pytest.raises(InputError, match="negative values .* -10% of its 99th percentile"):
        previous_reconstructor.reconstruct(image - 0.11 * np.percentile(image, 99))
    tolerated = image.copy()
    tolerated[0, 0] = -0.09 * np.percentile(image, 99)  # e.g. an interpolation overshoot at an edge
    assert np.all(np.isfinite(previous_reconstructor.reconstruct(tolerated)))


# --------------------------------------------------------- item 13: values beyond float32, -v before COMMAND


def test_reconstruct_api_refuses_values_beyond_float32_and_keeps_huge_scales(previous_reconstructor):
    image = head()[0].astype(np.float64) / 300.0  # maximum 1
    for scale in (1e300, 3e38, 1e20):  # beyond float32; within it, but the result or a square would overflow
        with pytest.raises(InputError, match="beyond ±1e\\+12"):
            previous_reconstructor.reconstruct(image * scale)
    scaled, change = previous_reconstructor.reconstruct(image * 1e12, return_change=True)
    assert np.all(np.isfinite(scaled)) and np.all(np.isfinite(change))
    np.testing.assert_allclose(scaled / 1e12, previous_reconstructor.reconstruct(image), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "command, arguments",
    [
        ("fastmrrecon", ["simulate", "absent.nrrd", "out.nrrd", "--acceleration", "2"]),
        ("ivimestimator", ["fit", "absent.nii.gz", "maps"]),
    ],
)
def test_verbose_before_or_after_the_command_logs_debug_lines(tmp_path, command, arguments):
    arguments = [
        str(tmp_path / argument) if "." in argument or argument == "maps" else argument for argument in arguments
    ]
    quiet = run(command, *arguments)
    assert one_line_error(quiet).startswith(f"{command}: error: no such")
    for verbose in (["-v", *arguments], [arguments[0], "-v", *arguments[1:]]):
        result = run(command, *verbose)
        assert result.returncode == 2 and f"{command} {arguments[0]}: arguments" in result.stderr, verbose
        assert result.stderr.strip().splitlines()[-1] == quiet.stderr.strip()


# --------------------------------------------------------------------------- item 12/13: model files


def model_file(path: Path, **config_changes) -> Path:
    from FastMRReconLib.model.reconstructor import ARCHITECTURE

    model = load_model_file(PREVIOUS_MODEL)
    save_model_file(path, ModelFile(ARCHITECTURE, {**model.config, **config_changes}, model.state_dict, model.metadata))
    return path


def test_unknown_config_key_is_a_model_file_error(tmp_path):
    from FastMRReconLib.model.reconstructor import Reconstructor

    path = model_file(tmp_path / "future.pt", attention_heads=4)
    with pytest.raises(ModelFileError, match="config key 'attention_heads' is unknown"):
        Reconstructor.load(path)
    write_volume_array(head(), GEOMETRY, tmp_path / "in.nrrd")
    result = run(
        "fastmrrecon", "reconstruct", str(tmp_path / "in.nrrd"), str(tmp_path / "o.nrrd"), "--model", str(path)
    )
    assert "attention_heads" in one_line_error(result) and not (tmp_path / "o.nrrd").exists()


def test_corrupt_model_files_are_not_valid_and_no_unsafe_advice_is_given(tmp_path):
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "slicer-fastmri-model", "network": torch.nn.Linear(2, 2)}, pickled)  # code, not weights
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(PREVIOUS_MODEL.read_bytes()[:4096])
    text = tmp_path / "text.pt"
    text.write_text("not a model\n" * 20)
    write_volume_array(head(), GEOMETRY, tmp_path / "in.nrrd")
    for path in (pickled, truncated, text):
        with pytest.raises(ModelFileError, match=f"{path.name} is not a valid model file") as caught:
            load_model_file(path)
        assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)
    result = run(
        "fastmrrecon", "reconstruct", str(tmp_path / "in.nrrd"), str(tmp_path / "o.nrrd"), "--model", str(pickled)
    )
    line = one_line_error(result)
    assert "pickled.pt is not a valid model file" in line and "weights_only" not in result.stderr


# ------------------------------------------------------------------------------- item 12: train's data


def bad_pairs_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files that are not make-pairs output, with the words their refusal must contain."""
    text = folder / "notes.npz"
    text.write_text("pairs\n")
    array = folder / "array.npz"
    with open(array, "wb") as stream:
        np.save(stream, np.zeros((4, 32, 32)))
    foreign = folder / "foreign.npz"
    np.savez(foreign, images=np.zeros((4, 32, 32)))
    missing_pair = folder / "short.npz"
    np.savez(
        missing_pair,
        input_0=np.ones((32, 32), np.float32),
        reference_0=np.ones((32, 32), np.float32),
        contrast=np.array(["T1w", "T2w"]),
        acceleration=np.array([2.0, 2.0]),
        subject=np.array(["a", "b"]),
    )
    return {
        "missing": (folder / "absent.npz", "no such pairs file"),
        "text": (text, "not a training pairs file"),
        "array": (array, "not a training pairs file"),
        "foreign": (foreign, "lacks contrast, acceleration, subject"),
        "short": (missing_pair, "lacks input_1, reference_1"),
    }


@pytest.mark.parametrize("case", ["missing", "text", "array", "foreign", "short"])
def test_train_refuses_files_that_are_not_pairs_before_working(tmp_path, case):
    path, words = bad_pairs_files(tmp_path)[case]
    out = tmp_path / "model.pt"
    result = run("fastmrrecon", "train", str(path), "--out", str(out), "--steps", "1", "--patch", "32")
    line = one_line_error(result)
    assert words in line and str(path.name) in line and "allow_pickle" not in line
    assert not out.exists() and not out.with_suffix(".checkpoint.pt").exists()
