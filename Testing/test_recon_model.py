"""The shipped reconstruction model (manifest, card, sizes, quality on held-out pairs) and the fastmrrecon
reconstruct / metrics / roi-stats commands as a user runs them."""

from __future__ import annotations

import numpy as np
import pytest

from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.model_files import read_manifest, sha256_file
from FastMRICommon.volume_files import read_volume_array, write_volume_array
from FastMRReconLib.metrics import psnr, ssim
from FastMRReconLib.model.reconstructor import DEFAULT_MODEL, MODELS_DIR, Reconstructor
from FastMRReconLib.training.pairs import HeadSource, make_pairs


@pytest.fixture(scope="module")
def shipped():
    return Reconstructor.load(device="cpu")


def test_shipped_model_is_listed_with_its_checksum_and_card():
    entry = read_manifest(MODELS_DIR)[DEFAULT_MODEL]
    assert entry.sha256 == sha256_file(MODELS_DIR / DEFAULT_MODEL)
    card = (MODELS_DIR / entry.card).read_text()
    assert entry.sha256 in card and "Held-out evaluation" in card and "make recon-model" in card


@pytest.mark.parametrize("shape", [(96, 96), (180, 230), (256, 256), (320, 320), (101, 77)])
def test_shipped_model_reconstructs_any_size(shipped, shape):
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * 500).astype(np.float32)
    out = shipped.reconstruct(image)
    assert out.shape == shape and np.all(np.isfinite(out))


@pytest.fixture(scope="module")
def mni_pairs():
    """Held-out pairs from the MNI152 maps (never used in training: it uses SynthSeg subjects)."""
    return make_pairs([HeadSource.mni152()], 6, seed=123)


def test_shipped_model_improves_held_out_mni152_images(shipped, mni_pairs):
    gains_psnr, gains_ssim = [], []
    for pair in mni_pairs:
        out = shipped.reconstruct(pair.input * 900.0) / 900.0  # any scanner scale
        gains_psnr.append(psnr(out, pair.reference) - psnr(pair.input, pair.reference))
        gains_ssim.append(ssim(out, pair.reference) - ssim(pair.input, pair.reference))
    assert np.mean(gains_psnr) > 1.0 and np.mean(gains_ssim) > 0.02


def _volume_files(tmp_path, pair):
    geometry = VolumeGeometry(spacing=(0.9, 0.9, 3.0), origin=(10.0, -20.0, 5.0))
    accelerated = write_volume_array(np.stack([pair.input] * 2), geometry, tmp_path / "accelerated.nrrd")
    reference = write_volume_array(np.stack([pair.reference] * 2), geometry, tmp_path / "reference.nrrd")
    return accelerated, reference, geometry


def test_reconstruct_and_metrics_commands(tmp_path, run_cli, mni_pairs):
    accelerated, reference, geometry = _volume_files(tmp_path, mni_pairs[0])
    out = tmp_path / "dnn.nii.gz"
    result = run_cli("fastmrrecon", "reconstruct", str(accelerated), str(out), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    array, written = read_volume_array(out)
    assert array.shape == (2, *mni_pairs[0].input.shape) and written.matches(geometry)
    result = run_cli("fastmrrecon", "metrics", "--reference", str(reference), str(accelerated), str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split("\t") == ["image", "PSNR_dB", "SSIM"] and len(lines) == 3
    expected = psnr(read_volume_array(accelerated)[0], read_volume_array(reference)[0])
    assert float(lines[1].split("\t")[1]) == pytest.approx(expected, abs=1e-3)


def test_roi_stats_command_and_its_errors(tmp_path, run_cli, mni_pairs):
    accelerated, _, _ = _volume_files(tmp_path, mni_pairs[0])
    rows, columns = mni_pairs[0].input.shape
    centre = f"{columns // 2},{rows // 2},0"
    result = run_cli(
        "fastmrrecon",
        "roi-stats",
        str(accelerated),
        "--roi1",
        centre,
        "--roi2",
        f"{columns // 2 + 10},{rows // 2},0",
        "--background",
        f"{columns // 2 - 10},{rows // 2},1",
    )
    assert result.returncode == 0, result.stderr
    header, values = result.stdout.strip().splitlines()
    assert header.split("\t")[-3:] == ["SNR1", "SNR2", "CNR"] and len(values.split("\t")) == 10
    result = run_cli(
        "fastmrrecon", "roi-stats", str(accelerated), "--roi1", "0,0,0", "--roi2", centre, "--background", centre
    )
    assert result.returncode == 2 and "does not fit inside the image" in result.stderr
    result = run_cli(
        "fastmrrecon", "roi-stats", str(accelerated), "--roi1", "1,2", "--roi2", centre, "--background", centre
    )
    assert result.returncode == 2 and "three indices" in result.stderr


def test_reconstruct_refuses_a_4d_file_and_nan_input(tmp_path, run_cli):
    from IVIMEstimatorLib.diffusion_series import DiffusionSeries, write_series_array

    geometry = VolumeGeometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    series = write_series_array(
        DiffusionSeries(
            np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32), np.array([0.0, 100.0]), geometry
        ),
        tmp_path / "four_d.nii.gz",
    )
    result = run_cli("fastmrrecon", "reconstruct", str(series), str(tmp_path / "out.nrrd"))
    assert result.returncode == 2 and "as a volume" in result.stderr  # one line, no traceback
    assert "Traceback" not in result.stderr
    volume = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    volume[0, 3, 3] = np.nan
    path = write_volume_array(volume, geometry, tmp_path / "nan.nrrd")
    result = run_cli("fastmrrecon", "reconstruct", str(path), str(tmp_path / "out.nrrd"))
    assert result.returncode == 2 and "NaN" in result.stderr
    assert not (tmp_path / "out.nrrd").exists()


def test_reconstruct_refuses_a_model_of_another_kind(tmp_path, run_cli, mni_pairs):
    from IVIMEstimatorLib.fits.estimate import MODELS_DIR as IVIM_MODELS_DIR
    from IVIMEstimatorLib.training.shipped_models import SHIPPED

    accelerated, _, _ = _volume_files(tmp_path, mni_pairs[0])
    ivim_model = IVIM_MODELS_DIR / SHIPPED[0].file
    result = run_cli(
        "fastmrrecon", "reconstruct", str(accelerated), str(tmp_path / "out.nrrd"), "--model", str(ivim_model)
    )
    assert result.returncode == 2 and "unknown here" in result.stderr
    assert not (tmp_path / "out.nrrd").exists()


# -- do no harm: the shipped noise-aware model on clean and noisy scans of a held-out head ------------------------
@pytest.fixture(scope="module")
def mni_scans():
    """A held-out MNI152 T2w slice scanned fully sampled: (noise-free SENSE image, the same at SNR 10 and 300)."""
    from FastMRReconLib.anatomy.head_synthesis import (
        PROTOCOLS,
        TissueMaps,
        brain_centre_slice,
        mni152_tissue_maps,
        synthesize,
    )
    from FastMRReconLib.kspace.sense import sense_reconstruction
    from FastMRReconLib.kspace.simulate import AcquisitionConfig, simulate_slice

    fractions = mni152_tissue_maps().fractions
    centre = brain_centre_slice(fractions)
    image = synthesize(TissueMaps({key: value[centre] for key, value in fractions.items()}, None), PROTOCOLS["T2w"])
    image = image.astype(np.float64)[:-1, :-1]

    def scan(snr: float) -> np.ndarray:
        acquired = simulate_slice(
            image, AcquisitionConfig(acceleration=1.0, snr=snr, coils=8), np.random.default_rng(3)
        )
        return sense_reconstruction(acquired.kspace, acquired.mask)

    return {snr: scan(snr) for snr in (np.inf, 300.0, 10.0)}


def test_shipped_model_leaves_a_clean_image_alone(shipped, mni_scans):
    clean = mni_scans[np.inf] * 1000.0
    assert psnr(shipped.reconstruct(clean), clean) >= 50.0
    high_snr = mni_scans[300.0] * 1000.0
    rms_change = np.sqrt(np.mean((shipped.reconstruct(high_snr) - high_snr)[clean > 0.1 * clean.max()] ** 2))
    noise_sd = np.std((high_snr - clean)[clean > 0.1 * clean.max()])
    assert rms_change <= noise_sd


def test_shipped_model_removes_noise_from_a_noisy_image(shipped, mni_scans):
    clean, noisy = mni_scans[np.inf], mni_scans[10.0]
    assert psnr(shipped.reconstruct(noisy), clean) > psnr(noisy, clean) + 3.0


def test_strength_scales_how_far_the_shipped_model_moves_the_image(shipped, mni_scans):
    noisy = mni_scans[10.0] * 500.0
    changes = [
        float(np.abs(shipped.reconstruct(noisy, strength=strength) - noisy).mean()) for strength in (0.0, 0.5, 1.5)
    ]
    assert changes[0] == 0.0 and changes[0] < changes[1] < changes[2]


# -- precision: bfloat16 inference moves the output far less than the image's noise ------------------------------
def test_bfloat16_inference_stays_within_a_fraction_of_the_noise(mni_pairs):
    """bfloat16 autocast (the "auto" choice on CPUs with native support) against float32 on held-out inputs:
    the two outputs differ by much less than the input's noise, and both improve on the input alike."""
    import torch

    exact = Reconstructor.load(device="cpu", precision="float32")
    fast = Reconstructor.load(device="cpu", precision="bfloat16")
    assert exact.autocast_dtype is None and fast.autocast_dtype == torch.bfloat16
    for pair in mni_pairs[:3]:
        image = pair.input * 900.0
        reference = exact.reconstruct(image)
        approx = fast.reconstruct(image)
        noise_sd = float(np.std(pair.input - pair.reference)) * 900.0
        assert np.sqrt(np.mean((approx - reference) ** 2)) < 0.1 * noise_sd
        assert abs(psnr(approx / 900.0, pair.reference) - psnr(reference / 900.0, pair.reference)) < 0.05


def test_precision_choices_and_their_errors():
    import torch

    from FastMRICommon.device import native_bfloat16_cpu, select_precision
    from FastMRICommon.errors import InputError

    assert select_precision(torch.device("cpu"), "float32") is None
    assert select_precision(torch.device("cpu"), "BFloat16") == torch.bfloat16
    assert select_precision(torch.device("cpu"), "auto") == (torch.bfloat16 if native_bfloat16_cpu() else None)
    assert select_precision(torch.device("cuda"), "auto") is None  # a GPU keeps float32 unless asked
    with pytest.raises(InputError, match="unknown precision 'half'"):
        select_precision(torch.device("cpu"), "half")


def test_reconstruct_command_takes_a_precision(tmp_path, run_cli, mni_pairs):
    pair = mni_pairs[0]
    noisy = pair.input + np.random.default_rng(1).normal(0, 0.1 * pair.input.mean(), pair.input.shape)
    accelerated = write_volume_array(np.stack([noisy] * 2).astype(np.float32), VolumeGeometry(), tmp_path / "in.nrrd")
    outputs = {}
    for precision in ("float32", "bfloat16"):
        outputs[precision] = tmp_path / f"{precision}.nrrd"
        result = run_cli(
            "fastmrrecon",
            "reconstruct",
            str(accelerated),
            str(outputs[precision]),
            "--device",
            "cpu",
            "--precision",
            precision,
        )
        assert result.returncode == 0, result.stderr
    exact, approx = (read_volume_array(outputs[name])[0] for name in ("float32", "bfloat16"))
    assert 0 < np.abs(approx - exact).max() < 0.05 * np.ptp(exact)
    result = run_cli("fastmrrecon", "reconstruct", str(accelerated), str(tmp_path / "x.nrrd"), "--precision", "int8")
    assert result.returncode == 2 and "invalid choice" in result.stderr
