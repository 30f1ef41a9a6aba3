"""Reconstruction engine: SENSE, metrics and ROI statistics, the network at any size, the reconstructor's
input handling and scale, training (resume) and the training pairs."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy import ndimage

from FastMRICommon.errors import InputError
from FastMRReconLib.kspace.sense import cg_sense, estimate_coil_maps, sense_reconstruction
from FastMRReconLib.kspace.simulate import AcquisitionConfig, simulate_slice, zero_filled_rss
from FastMRReconLib.metrics import object_mask, psnr, roi_statistics, ssim
from FastMRReconLib.model.network import NetworkConfig, ReconstructionNetwork
from FastMRReconLib.model.reconstructor import ARCHITECTURE, REGISTRY, Reconstructor, default_batch_size, slice_scales
from FastMRReconLib.training.pairs import (
    ORIENTATIONS,
    RANDOM_CONTRAST,
    HeadSource,
    PairConfig,
    load_pairs,
    make_pairs,
    save_pairs,
    scan_pair,
)
from FastMRReconLib.training.trainer import TrainingConfig, distributed_rank, train

SMALL = NetworkConfig(channels=4, depth=2, fidelity_channels=4)


def phantom(rows=96, columns=80) -> np.ndarray:
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : columns * 1j]
    head = ((x / 0.8) ** 2 + (y / 0.9) ** 2 < 1).astype(float)
    return head * (1 + 0.6 * ((x - 0.2) ** 2 + y**2 < 0.08) - 0.4 * ((x + 0.3) ** 2 + (y - 0.3) ** 2 < 0.03))


@pytest.mark.parametrize("acceleration", [2.0, 3.0])
def test_sense_unfolds_what_zero_filling_aliases(acceleration):
    image = phantom(160, 144)
    scan = simulate_slice(
        image, AcquisitionConfig(acceleration=acceleration, snr=1e6, coils=8), np.random.default_rng(1)
    )
    error = lambda result: np.sqrt(np.mean((result - image) ** 2)) / image.max()
    sense = sense_reconstruction(scan.kspace, scan.mask, regularization=1e-3)  # noise-free: little damping
    assert error(sense) < 0.3 * error(zero_filled_rss(scan.kspace))
    assert error(sense) < 0.02


def test_regularised_sense_is_unbiased_fully_sampled_and_damps_unfolding_noise():
    image = phantom(160, 144)
    full = simulate_slice(image, AcquisitionConfig(acceleration=1.0, snr=1e6, coils=8), np.random.default_rng(4))
    maps = estimate_coil_maps(full.kspace, full.mask)
    unregularised = np.abs(cg_sense(full.kspace, full.mask, maps, regularization=1e-9))
    np.testing.assert_allclose(
        np.abs(cg_sense(full.kspace, full.mask, maps)), unregularised, atol=1e-3 * image.max()
    )  # no 1 / (1 + lambda) scaling
    noisy = simulate_slice(image, AcquisitionConfig(acceleration=3.0, snr=20.0, coils=8), np.random.default_rng(5))
    maps = estimate_coil_maps(noisy.kspace, noisy.mask)
    error = lambda result: np.sqrt(np.mean((np.abs(result) - image) ** 2))
    assert error(cg_sense(noisy.kspace, noisy.mask, maps)) < 0.9 * error(
        cg_sense(noisy.kspace, noisy.mask, maps, regularization=1e-4)
    )


def test_coil_maps_have_unit_rss_inside_and_zero_far_outside():
    image = phantom()
    scan = simulate_slice(image, AcquisitionConfig(acceleration=2.0, snr=100.0), np.random.default_rng(2))
    maps = estimate_coil_maps(scan.kspace, scan.mask)
    rss = np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    np.testing.assert_allclose(rss[image > 0], 1.0, atol=1e-5)
    assert rss[0, 0] == 0 and rss[-1, -1] == 0


def test_cg_sense_batches_slices_like_single_calls():
    rng = np.random.default_rng(3)
    scans = [simulate_slice(phantom(), AcquisitionConfig(acceleration=2.0, snr=50.0), rng) for _ in range(2)]
    maps = [estimate_coil_maps(scan.kspace, scan.mask) for scan in scans]
    batch = cg_sense(np.stack([s.kspace for s in scans]), np.stack([s.mask for s in scans]), np.stack(maps))
    for index, scan in enumerate(scans):
        np.testing.assert_allclose(batch[index], cg_sense(scan.kspace, scan.mask, maps[index]), atol=1e-5)


def test_sense_needs_an_acquired_centre():
    scan = simulate_slice(phantom(), AcquisitionConfig(acceleration=2.0), np.random.default_rng(0))
    mask = scan.mask.copy()
    mask[mask.shape[0] // 2] = False
    with pytest.raises(InputError, match="centre line is not acquired"):
        estimate_coil_maps(scan.kspace, mask)


def reference_ssim(image: np.ndarray, reference: np.ndarray, data_range: float) -> np.ndarray:
    """Wang et al.'s SSIM map written out with scipy's uniform filter (valid window centres)."""
    mean = lambda a: ndimage.uniform_filter(a, 7)[3:-3, 3:-3]
    c1, c2, n = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2, 49
    mx, my = mean(image), mean(reference)
    vx, vy = (mean(image**2) - mx**2) * n / (n - 1), (mean(reference**2) - my**2) * n / (n - 1)
    cov = (mean(image * reference) - mx * my) * n / (n - 1)
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def test_psnr_and_ssim_follow_the_stated_convention():
    rng = np.random.default_rng(4)
    reference = phantom(64, 64) + 0.01 * rng.random((64, 64))
    image = reference + 0.05 * rng.standard_normal(reference.shape)
    inside = object_mask(reference[None])[0]
    assert inside.sum() < reference.size  # background beyond the rim is left out
    expected_psnr = 10 * np.log10(reference.max() ** 2 / np.mean((image - reference)[inside] ** 2))
    assert psnr(image, reference) == pytest.approx(expected_psnr, rel=1e-9)
    expected_ssim = reference_ssim(image, reference, reference.max())[inside[3:-3, 3:-3]].mean()
    assert ssim(image, reference) == pytest.approx(expected_ssim, rel=1e-6)
    assert ssim(reference, reference) == pytest.approx(1.0) and psnr(reference, reference) == float("inf")
    assert ssim(image[None].repeat(2, 0), reference[None].repeat(2, 0)) == pytest.approx(ssim(image, reference))


def test_metrics_refuse_mismatched_or_bad_images():
    with pytest.raises(InputError, match="differs from the reference"):
        psnr(np.ones((8, 8)), np.ones((8, 9)))
    with pytest.raises(InputError, match="finite"):
        ssim(np.full((8, 8), np.nan), np.ones((8, 8)))
    with pytest.raises(InputError, match="no positive signal"):
        psnr(np.ones((8, 8)), np.zeros((8, 8)))


def test_roi_statistics_on_a_known_volume():
    volume = np.zeros((3, 32, 32))
    volume[1, 8:12, 8:12] = 10.0
    volume[1, 20:24, 20:24] = 4.0
    volume[1, 0:8, 24:32] = np.tile([1.0, 3.0], (8, 4))  # background with SD > 0
    stats = roi_statistics(volume, roi1=(10, 10, 1), roi2=(22, 22, 1), background=(28, 4, 1), size=4)
    sd = np.std(np.tile([1.0, 3.0], (4, 2)), ddof=1)
    assert stats.mean1 == 10 and stats.mean2 == 4 and stats.sd_background == pytest.approx(sd)
    assert stats.snr1 == pytest.approx(10 / sd) and stats.cnr == pytest.approx(6 / sd)


@pytest.mark.parametrize("point, message", [((1, 10, 1), "does not fit"), ((10, 10, 5), "outside the image")])
def test_roi_outside_or_at_the_edge_is_refused(point, message):
    volume = np.random.default_rng(0).random((3, 32, 32))
    with pytest.raises(InputError, match=message):
        roi_statistics(volume, roi1=point, roi2=(10, 10, 1), background=(20, 20, 1))


def test_roi_background_without_noise_is_refused():
    volume = np.ones((1, 32, 32))
    with pytest.raises(InputError, match="zero SD"):
        roi_statistics(volume, (10, 10, 0), (20, 20, 0), (5, 25, 0))


@pytest.mark.parametrize("shape", [(96, 96), (180, 230), (256, 256), (320, 320), (97, 131), (17, 33)])
def test_network_keeps_any_image_size(shape):
    network = ReconstructionNetwork(SMALL).eval()
    with torch.inference_mode():
        restored, final = network(torch.rand(1, 1, *shape))
    assert restored.shape == final.shape == (1, 1, *shape)


def test_network_refuses_images_below_its_minimum():
    network = ReconstructionNetwork(SMALL)
    with pytest.raises(InputError, match="at least 8 x 8"):
        network(torch.rand(1, 1, 7, 64))


def test_fidelity_stage_starts_as_the_identity_on_the_unet_output():
    network = ReconstructionNetwork(SMALL).eval()
    with torch.inference_mode():
        restored, final = network(torch.rand(2, 1, 40, 48))
    torch.testing.assert_close(restored, final)


def test_unet_widths_stop_at_max_channels_and_older_model_files_have_no_limit():
    capped = ReconstructionNetwork(NetworkConfig(channels=16, depth=4, max_channels=64))
    assert [block[0].out_channels for block in capped.unet.down] == [16, 32, 64, 64, 64]
    assert capped.min_size == 32
    legacy = REGISTRY[ARCHITECTURE](channels=16, depth=3, fidelity_channels=16, fidelity_layers=3)
    assert [block[0].out_channels for block in legacy.unet.down] == [16, 32, 64, 128]


def test_training_pairs_follow_the_pixel_size_and_train_below_the_patch_size():
    head = [HeadSource.mni152()]
    coarse = make_pairs(head, 2, seed=1, config=PairConfig(pixel_range=(3.0, 3.0)))
    fine = make_pairs(head, 2, seed=1, config=PairConfig(pixel_range=(1.0, 1.0)))
    for small, large in zip(coarse, fine):
        assert all(48 <= n <= 86 for n in small.input.shape)  # 160-256 mm / 3 mm, at least 48
        assert all(160 <= n <= 256 for n in large.input.shape)
        area = [np.count_nonzero(pair.reference > 0.1 * np.percentile(pair.reference, 99)) for pair in (small, large)]
        assert 6 < area[1] / area[0] < 12  # the same head in 3 mm and in 1 mm pixels: about 9x the pixels
    config = TrainingConfig(steps=2, batch_size=2, patch=96, network=SMALL)
    assert all(np.isfinite(train(coarse, config).losses))  # smaller images sit in a zero canvas


def test_training_pairs_record_their_orientation_and_can_be_restricted_to_one(tmp_path):
    head = [HeadSource.mni152()]
    config = PairConfig(pixel_range=(2.0, 2.0))
    for orientation, long_axis in (("axial", 0), ("sagittal", 1)):
        for pair in make_pairs(head, 2, seed=2, config=replace(config, orientations=(orientation,))):
            assert pair.orientation == orientation
            brain = pair.reference > 0.2 * np.percentile(pair.reference, 99)
            extent = [np.ptp(np.flatnonzero(brain.any(axis=1 - axis))) for axis in (0, 1)]
            # the brain is longest front to back: down the rows of an axial slice, across a sagittal one
            assert extent[long_axis] > 1.05 * extent[1 - long_axis]
    with pytest.raises(InputError, match="orientations must be some of axial, coronal, sagittal, not oblique"):
        make_pairs(head, 1, seed=0, config=PairConfig(orientations=("axial", "oblique")))
    # files written before orientations were recorded still load
    pair = make_pairs(head, 1, seed=0, config=config)[0]
    np.savez(
        tmp_path / "old.npz",
        input_0=pair.input,
        reference_0=pair.reference,
        contrast=np.array([pair.contrast]),
        acceleration=np.array([pair.acceleration]),
        subject=np.array([pair.subject]),
    )
    assert load_pairs(tmp_path / "old.npz")[0].orientation == "unknown"


def test_training_pairs_in_random_contrasts_and_unknown_contrasts_refused():
    head = [HeadSource.mni152()]
    config = PairConfig(pixel_range=(2.0, 2.0), contrasts=(RANDOM_CONTRAST,), snr_range=(1e6, 1e6))
    pairs = make_pairs(head, 6, seed=3, config=config)
    assert all(pair.contrast == RANDOM_CONTRAST for pair in pairs)
    for pair in pairs:
        assert (pair.reference > 0.05 * pair.reference.max()).mean() > 0.1 and np.isfinite(pair.input).all()
    assert make_pairs(head, 1, seed=3, config=config)[0].reference.tobytes() == pairs[0].reference.tobytes()
    with pytest.raises(InputError, match="contrasts must be some of T1w, T2w, PD, FLAIR, random, not DWI"):
        make_pairs(head, 1, seed=0, config=PairConfig(contrasts=("T1w", "DWI")))


def test_training_pairs_can_acquire_less_k_space_than_their_grid():
    square = np.zeros((96, 96))
    square[24:72, 24:72] = 1.0
    clean = PairConfig(snr_range=(1e6, 1e6))
    for resolution_range, ringing in (((1.0, 1.0), False), ((0.5, 0.5), True)):
        config = replace(clean, resolution_range=resolution_range)
        reference = scan_pair(square, 2.0, np.random.default_rng(3), config)[1]  # fully sampled: no aliasing
        plateau = np.median(reference[40:56, 40:56])
        assert (reference.max() > 1.05 * plateau) == ringing  # Gibbs overshoot only from truncated k-space


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A tiny network trained for a few steps on MNI152 pairs (for I/O and scale tests, not quality)."""
    folder = tmp_path_factory.mktemp("recon")
    pairs = make_pairs([HeadSource.mni152()], 4, seed=0)
    saved = load_pairs(save_pairs(pairs, folder / "pairs.npz"))
    config = TrainingConfig(steps=6, batch_size=2, patch=64, checkpoint_every=3, validate_every=3, network=SMALL)
    result = train(saved[:3], config, validation=saved[3:], checkpoint=folder / "checkpoint.pt")
    return folder, pairs, config, result


def test_training_pairs_are_seeded_and_survive_a_round_trip(small_model):
    folder, pairs, _, _ = small_model
    again = load_pairs(folder / "pairs.npz")
    assert [p.contrast for p in again] == [p.contrast for p in pairs]
    assert [p.orientation for p in again] == [p.orientation for p in pairs]
    assert {p.orientation for p in pairs} <= set(ORIENTATIONS)
    np.testing.assert_array_equal(again[0].input, pairs[0].input)
    first = make_pairs([HeadSource.mni152()], 1, seed=0, config=PairConfig(orientations=ORIENTATIONS))[0]
    np.testing.assert_array_equal(first.reference, pairs[0].reference)  # naming all orientations = the default
    assert pairs[0].input.dtype == np.float32 and pairs[0].input.shape == pairs[0].reference.shape


def test_training_resumes_exactly_from_its_checkpoint(small_model):
    folder, pairs, config, result = small_model
    assert len(result.losses) == 6 and [entry["step"] for entry in result.validation] == [3, 6]
    longer = TrainingConfig(**{**vars(config), "steps": 8})
    resumed = train(pairs[:3], longer, checkpoint=folder / "checkpoint.pt")
    assert resumed.losses[:6] == result.losses and len(resumed.losses) == 8
    fresh = train(pairs[:3], longer)
    np.testing.assert_allclose(resumed.losses, fresh.losses, rtol=1e-4)
    other = TrainingConfig(**{**vars(config), "patch": 32})
    with pytest.raises(InputError, match="other settings"):
        train(pairs[:3], other, checkpoint=folder / "checkpoint.pt")


def _distributed_worker(rank: int, folder, pairs, config) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only: no dependence on the machine's network set-up
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        assert distributed_rank() == (rank, 2)
        result = train(pairs, config, checkpoint=folder / f"checkpoint_{rank}.pt")
        torch.save({"weights": result.network.state_dict(), "losses": result.losses}, folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_training_keeps_the_processes_in_step(small_model, tmp_path):
    _, pairs, config, _ = small_model
    config = TrainingConfig(**{**vars(config), "steps": 3})
    mp.spawn(_distributed_worker, args=(tmp_path, pairs[:3], config), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    for name, weight in ranks[0]["weights"].items():
        torch.testing.assert_close(weight, ranks[1]["weights"][name], rtol=0, atol=0)  # gradients averaged
    assert ranks[0]["losses"][0] != ranks[1]["losses"][0]  # each process draws its own batch
    single = train(pairs[:3], TrainingConfig(**{**vars(config), "steps": 1}))
    assert ranks[0]["losses"][0] == pytest.approx(single.losses[0], rel=1e-5)  # rank 0 = a single process
    assert (tmp_path / "checkpoint_0.pt").is_file() and not (tmp_path / "checkpoint_1.pt").exists()


def test_reconstruction_keeps_shape_and_scale(small_model):
    _, pairs, _, result = small_model
    reconstructor = Reconstructor(result.network, "cpu")
    image = pairs[0].input
    for scale in (1.0, 1e4):
        out = reconstructor.reconstruct(image * scale)
        assert out.shape == image.shape and out.dtype == np.float32 and out.min() >= 0
        np.testing.assert_allclose(out / scale, reconstructor.reconstruct(image), rtol=1e-3, atol=1e-4)
    crop = image[:64, :64]
    volume = np.stack([crop, crop[::-1], crop.T])
    out = reconstructor.reconstruct(volume, batch_size=1)
    np.testing.assert_allclose(out[0], reconstructor.reconstruct(crop), rtol=1e-4, atol=1e-5)
    # the default batches (all three 64 x 64 slices at once on the CPU) give the same slices
    np.testing.assert_allclose(reconstructor.reconstruct(volume), out, rtol=1e-4, atol=1e-5)


def test_default_batches_hold_a_fixed_number_of_pixels_on_the_cpu():
    assert [default_batch_size("cpu", shape) for shape in ((128, 128), (256, 256), (180, 230), (512, 512))] == [
        8,
        2,
        3,
        1,
    ]
    assert default_batch_size("cuda", (512, 512)) == default_batch_size("cuda:1", (128, 128)) == 8


@pytest.mark.parametrize(
    "image, message",
    [
        (np.full((32, 32), np.nan), "NaN or infinite"),
        (np.ones((32, 32)), "constant"),
        (np.ones((32, 32), complex), "complex"),
        (np.ones((2, 2, 32, 32)), "4D"),
        (np.random.default_rng(0).random((4, 6)), "at least 8 x 8"),
    ],
)
def test_bad_images_are_refused(small_model, image, message):
    reconstructor = Reconstructor(small_model[3].network, "cpu")
    with pytest.raises(InputError, match=message):
        reconstructor.reconstruct(image)


def test_slice_scales_do_not_blow_up_empty_slices():
    volume = np.zeros((3, 16, 16), np.float32)
    volume[1] = np.random.default_rng(0).random((16, 16)) * 100
    scales = slice_scales(volume)
    assert scales[0] == scales[2] == pytest.approx(0.05 * np.percentile(volume, 99))
    assert scales[1] == pytest.approx(np.percentile(volume[1], 99))
