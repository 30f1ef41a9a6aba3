"""The noise-aware reconstruction: network inputs and warm start, the reconstructor's noise SD, strength and
change map, noise-free training pairs and real-anatomy objects, and the command line's new options."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import run_command as run

from FastMRICommon.errors import InputError
from FastMRICommon.geometry import VolumeGeometry
from FastMRICommon.volume_files import read_volume_array, write_volume_array
from FastMRReconLib.anatomy.real_anatomy import HELD_OUT_IMAGES, TRAINING_IMAGES, draw_slice
from FastMRReconLib.model.network import NetworkConfig, ReconstructionNetwork, widened_state
from FastMRReconLib.model.reconstructor import Reconstructor, check_noise_settings
from FastMRReconLib.training.pairs import REAL_CONTRAST, PairConfig, make_image_pairs, scan_pair

SMALL = dict(channels=4, depth=2, fidelity_channels=4)


def phantom(rows: int = 96, columns: int = 80) -> np.ndarray:
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : columns * 1j]
    head = ((x / 0.8) ** 2 + (y / 0.9) ** 2 < 1).astype(float)
    return head * (1 + 0.6 * ((x - 0.2) ** 2 + y**2 < 0.08) - 0.4 * ((x + 0.3) ** 2 + (y - 0.3) ** 2 < 0.03))


def perturbed(network: ReconstructionNetwork, seed: int = 0) -> ReconstructionNetwork:
    """``network`` with every weight moved at random (zero-initialised parts would hide the noise input);
    its weights set from ``seed`` alone, whatever ran before."""
    torch.manual_seed(seed)
    network.load_state_dict(type(network)(network.config).state_dict())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return network.eval()


def test_warm_start_keeps_the_plain_networks_unet_for_any_noise_map():
    plain = perturbed(ReconstructionNetwork(NetworkConfig(**SMALL)))
    aware = ReconstructionNetwork(NetworkConfig(**SMALL, noise_input=True)).eval()
    aware.load_state_dict(widened_state(plain.state_dict(), aware))
    image = torch.rand(2, 1, 48, 40)
    with torch.no_grad():
        for level in (0.0, 0.01, 0.3):
            noise = torch.full_like(image, level)
            embedding = aware.embedding(noise.mean(dim=(1, 2, 3)))
            torch.testing.assert_close(aware.unet(image, noise, embedding), plain.unet(image))
        # the gated fidelity starts near the U-Net output (trust sigmoid(4) = 0.98), no correction
        restored, final = aware(image, torch.full_like(image, 0.05))
        torch.testing.assert_close(final, image + torch.sigmoid(torch.tensor(4.0)) * (restored - image))


def test_noise_map_reaches_both_stages_and_is_required():
    aware = perturbed(ReconstructionNetwork(NetworkConfig(**SMALL, noise_input=True)))
    image = torch.rand(1, 1, 48, 40)
    with torch.no_grad():
        quiet, noisy = aware(image, torch.full_like(image, 0.001)), aware(image, torch.full_like(image, 0.2))
    assert not torch.allclose(quiet[0], noisy[0]) and not torch.allclose(quiet[1], noisy[1])
    with pytest.raises(InputError, match="needs a noise map"):
        aware(image)
    with pytest.raises(InputError, match="takes no noise map"):
        ReconstructionNetwork(NetworkConfig(**SMALL))(image, torch.zeros_like(image))


@pytest.fixture(scope="module")
def aware_reconstructor() -> Reconstructor:
    return Reconstructor(perturbed(ReconstructionNetwork(NetworkConfig(**SMALL, noise_input=True)), 1), "cpu")


def test_change_map_is_change_over_noise_sd(aware_reconstructor):
    rng = np.random.default_rng(0)
    volume = np.stack([phantom() * 400 + rng.normal(0, 8, phantom().shape) for _ in range(3)]).clip(0)
    before = volume.copy()
    output, change = aware_reconstructor.reconstruct(volume, noise_sd=8.0, return_change=True)
    np.testing.assert_array_equal(volume, before)
    np.testing.assert_allclose(change, np.abs(output - volume) / 8.0, rtol=1e-4, atol=1e-4)
    measured_output, measured = aware_reconstructor.reconstruct(volume, return_change=True)
    sigma = aware_reconstructor.noise_sd_maps(volume.astype(np.float32))
    np.testing.assert_allclose(measured, np.abs(measured_output - volume) / sigma, rtol=1e-4, atol=1e-4)
    assert np.median(sigma[volume > 100]) == pytest.approx(8.0, rel=0.2)
    single, single_change = aware_reconstructor.reconstruct(volume[0], noise_sd=8.0, return_change=True)
    assert single.shape == single_change.shape == volume[0].shape


def test_told_noise_level_follows_noise_sd_and_strength(aware_reconstructor):
    image = phantom() * 400
    outputs = [
        aware_reconstructor.reconstruct(image, noise_sd=sd, strength=strength)
        for sd, strength in ((4.0, 1.0), (40.0, 1.0), (40.0, 0.1))
    ]
    assert not np.allclose(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], outputs[2], rtol=1e-5, atol=1e-3)  # 40 x 0.1 is told as 4


@pytest.mark.parametrize(
    "noise_sd, strength, message",
    [
        (0.0, 1.0, "positive"),
        (-2.0, 1.0, "positive"),
        (float("nan"), 1.0, "positive"),
        (None, -0.1, "strength"),
        (None, 2.5, "strength"),
        (None, float("nan"), "strength"),
    ],
)
def test_bad_noise_settings_are_refused(aware_reconstructor, noise_sd, strength, message):
    with pytest.raises(InputError, match=message):
        aware_reconstructor.reconstruct(phantom(), noise_sd=noise_sd, strength=strength)
    with pytest.raises(InputError, match=message):
        check_noise_settings(noise_sd, strength)


def test_zero_batch_size_is_refused(aware_reconstructor):
    with pytest.raises(InputError, match="batch size"):
        aware_reconstructor.reconstruct(phantom(), batch_size=-1)


def test_an_image_of_pure_noise_is_reconstructed_with_a_warning(aware_reconstructor, caplog):
    noise = np.abs(
        np.random.default_rng(1).normal(0, 1, (64, 64)) + 1j * np.random.default_rng(2).normal(0, 1, (64, 64))
    )
    with caplog.at_level(logging.WARNING, logger="fastmrrecon"):
        output = aware_reconstructor.reconstruct(noise)
    assert np.all(np.isfinite(output)) and "mostly noise" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastmrrecon"):
        aware_reconstructor.reconstruct(phantom() * 100 + np.random.default_rng(3).normal(0, 1, phantom().shape))
    assert "mostly noise" not in caplog.text


def test_integer_dicom_range_input_is_scale_equivariant(aware_reconstructor):
    image = (phantom() * 3000 + np.random.default_rng(4).normal(0, 30, phantom().shape)).clip(0).astype(np.uint16)
    output = aware_reconstructor.reconstruct(image)
    assert output.dtype == np.float32
    np.testing.assert_allclose(output, aware_reconstructor.reconstruct(image.astype(np.float64)), rtol=1e-5, atol=1e-3)
    # the noise map scales with the image, so the output does too (the network sees the same normalised input)
    np.testing.assert_allclose(aware_reconstructor.reconstruct(image / 100.0), output / 100.0, rtol=1e-3, atol=1e-3)


def test_noise_free_pair_at_r1_is_its_own_target():
    config = PairConfig(accelerations=(1.0,), reference="noise-free", noise_free_fraction=1.0)
    image = phantom(96, 96)
    noisy_input, reference = scan_pair(image, 1.0, np.random.default_rng(0), config)
    np.testing.assert_allclose(noisy_input, reference, atol=1e-5 * reference.max())
    noisy_input, reference = scan_pair(
        image, 2.0, np.random.default_rng(1), PairConfig(reference="noise-free", snr_range=(20.0, 20.0))
    )
    inside = image > 0.5
    assert np.std((reference - image)[inside]) < 0.1 * np.std((noisy_input - image)[inside])  # no noise in the target
    with pytest.raises(InputError, match="reference"):
        scan_pair(image, 2.0, np.random.default_rng(0), PairConfig(reference="AV3"))


def test_real_image_pairs_are_seeded_and_marked_real():
    mni = [image for image in TRAINING_IMAGES if not image.shared]
    first, again = (make_image_pairs(mni, 2, seed=4, config=PairConfig(reference="noise-free")) for _ in range(2))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.input, b.input)
    assert all(pair.contrast == REAL_CONTRAST and pair.subject == "MNI152 T1" for pair in first)
    assert first[0].input.shape != first[1].input.shape or not np.array_equal(first[0].input, first[1].input)


def test_held_out_images_are_never_training_images():
    assert not {image.name for image in HELD_OUT_IMAGES} & {image.name for image in TRAINING_IMAGES}
    for image in HELD_OUT_IMAGES:
        if image.available():
            array = image.array()
            assert array.ndim == 3 and np.percentile(array[array > 0], 99) == pytest.approx(1.0, rel=1e-3)


def test_drawn_slices_are_even_sized_and_non_negative():
    volume = TRAINING_IMAGES[-1].array()
    for seed in range(3):
        image, axis = draw_slice(volume, True, np.random.default_rng(seed))
        assert image.shape[0] % 2 == 0 and image.shape[1] % 2 == 0 and image.min() >= 0 and axis in (0, 1, 2)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, aware_reconstructor):
    from FastMRICommon.model_files import ModelFile, save_model_file
    from FastMRReconLib.model.reconstructor import ARCHITECTURE

    path = tmp_path_factory.mktemp("model") / "aware.pt"
    network = aware_reconstructor.network
    save_model_file(path, ModelFile(ARCHITECTURE, network.config.as_dict(), network.state_dict(), {}))
    return path


def test_cli_writes_the_change_map(tmp_path, model_file):
    geometry = VolumeGeometry((0.9, 0.9, 3.0), (0.0, 0.0, 0.0), ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
    volume = np.stack([phantom() * 400 + np.random.default_rng(k).normal(0, 8, phantom().shape) for k in range(2)])
    write_volume_array(volume.clip(0).astype(np.float32), geometry, tmp_path / "in.nrrd")
    result = run(
        "fastmrrecon",
        "reconstruct",
        str(tmp_path / "in.nrrd"),
        str(tmp_path / "out.nrrd"),
        "--model",
        str(model_file),
        "--strength",
        "high",
        "--noise-sd",
        "8",
        "--change-map",
        str(tmp_path / "change.nrrd"),
    )
    assert result.returncode == 0, result.stderr
    output, _ = read_volume_array(tmp_path / "out.nrrd")
    change, change_geometry = read_volume_array(tmp_path / "change.nrrd")
    assert change_geometry.matches(geometry, 1e-4)
    written, _ = read_volume_array(tmp_path / "in.nrrd")
    np.testing.assert_allclose(change, np.abs(output - written) / 8.0, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--noise-sd", "0"], "positive"),
        (["--noise-sd", "nan"], "positive"),
        (["--strength", "extreme"], "low, medium, high"),
        (["--strength", "3"], "strength"),
        (["--change-map", "OUT"], "another file"),
    ],
)
def test_cli_bad_noise_options_exit_2_with_one_line(tmp_path, model_file, options, message):
    write_volume_array(
        np.stack([phantom()] * 2).astype(np.float32),
        VolumeGeometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))),
        tmp_path / "in.nrrd",
    )
    out = tmp_path / "out.nrrd"
    options = [str(out) if option == "OUT" else option for option in options]
    result = run(
        "fastmrrecon", "reconstruct", str(tmp_path / "in.nrrd"), str(out), "--model", str(model_file), *options
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and message in lines[-1] and "Traceback" not in result.stderr
    assert not out.exists()


def test_snr_gate_keeps_all_below_full_none_above_and_log_linear_between():
    from FastMRReconLib.model.reconstructor import SnrGate

    gate = SnrGate(full=10.0, none=40.0)
    np.testing.assert_allclose(
        gate.weights(np.array([5.0, 10.0, 20.0, 40.0, 80.0, np.inf])), [1, 1, 0.5, 0, 0, 0], atol=1e-6
    )
    sigma = np.stack([np.full((4, 4), 1.0), np.full((4, 4), 10.0)])
    told = gate.told_snr(np.array([100.0, 100.0]), sigma, strength=2.0)
    np.testing.assert_allclose(told[:, 0, 0], [50.0, 5.0])
    assert np.all(np.isinf(gate.told_snr(np.array([100.0, 100.0]), sigma, strength=0.0)))


def test_gated_reconstruction_returns_a_clean_image_unchanged_and_changes_a_noisy_one():
    network = perturbed(ReconstructionNetwork(NetworkConfig(**SMALL, noise_input=True)), 2)
    gated = Reconstructor(network, "cpu")
    clean = phantom() * 400
    np.testing.assert_array_equal(gated.reconstruct(clean, noise_sd=0.4), clean.astype(np.float32))  # SNR ~ 1000
    noisy = clean + np.random.default_rng(5).normal(0, 40, clean.shape)
    assert not np.allclose(gated.reconstruct(noisy.clip(0), noise_sd=40.0), noisy.clip(0))  # SNR ~ 10
