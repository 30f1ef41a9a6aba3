"""The raw k-space reconstruction as users run it: ``KspaceReconstructor`` (progress, cancel, masks, bad input),
``fastmrrecon simulate --save-kspace`` then ``fastmrrecon reconstruct-kspace``, the module logic's raw k-space
input on a real MRML scene, and the shipped k-space model against CG-SENSE on held-out simulated scans."""

from __future__ import annotations

import numpy as np
import pytest

from FastMRICommon.errors import Cancelled, InputError
from FastMRICommon.model_files import ModelFile, read_manifest, save_model_file, sha256_file
from FastMRICommon.volume_files import read_volume_array
from FastMRReconLib.kspace.coils import coil_sensitivities
from FastMRReconLib.kspace.fft import fft2c, ifft2c
from FastMRReconLib.kspace.poisson_disc import poisson_disc_mask
from FastMRReconLib.kspace.raw_kspace import (
    acquired_mask,
    box_coil_maps,
    calibration_box,
    held_out_samples,
    kspace_noise_sd,
    read_raw_kspace,
)
from FastMRReconLib.kspace.sense import cg_sense
from FastMRReconLib.kspace.simulate import object_mean, smooth_phase
from FastMRReconLib.metrics import psnr, ssim
from FastMRReconLib.model.kspace_reconstructor import (
    FINAL_CONSISTENCY_ITERATIONS,
    FINAL_WEIGHTS,
    KSPACE_ARCHITECTURE,
    KSPACE_MODEL,
    KspaceReconstructor,
    final_consistency,
)
from FastMRReconLib.model.reconstructor import MODELS_DIR
from FastMRReconLib.model.unrolled import UnrolledConfig, UnrolledNetwork

SMALL = UnrolledConfig(unrolls=2, channels=8, layers=3, cg_iterations=3)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A small untrained unrolled network in a model file: its denoiser starts as the identity, so it is a
    data-consistent SENSE reconstruction, enough to test the wiring."""
    import torch

    torch.manual_seed(0)
    network = UnrolledNetwork(SMALL)
    path = tmp_path_factory.mktemp("model") / "small_kspace.pt"
    save_model_file(path, ModelFile(KSPACE_ARCHITECTURE, SMALL.as_dict(), network.state_dict(), {}))
    return path


def head_scan(image: np.ndarray, acceleration: float, snr: float, seed: int, coils: int = 8):
    """(undersampled k-space [coils, ky, kx], mask) of a magnitude image, Poisson-disc sampled."""
    rng = np.random.default_rng(seed)
    maps = coil_sensitivities(image.shape, coils, seed=seed)
    clean = fft2c(maps * image * np.exp(1j * smooth_phase(image.shape, rng)))
    sigma = object_mean(image) / snr
    noisy = clean + sigma * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    mask = poisson_disc_mask(image.shape, acceleration, calibration=20, seed=seed)
    return (noisy * mask).astype(np.complex64), mask


@pytest.fixture(scope="module")
def mni_slices():
    from FastMRReconLib.anatomy.head_synthesis import PROTOCOLS, mni152_tissue_maps, synthesize

    maps = mni152_tissue_maps()
    volume = synthesize(maps, PROTOCOLS["T1w"], np.random.default_rng(0))
    middle = volume.shape[0] // 2
    return [np.ascontiguousarray(volume[index, 8:-8, 8:-8]).astype(np.float64) for index in (middle - 10, middle + 10)]


def test_reconstructor_follows_the_data_and_reports_progress(small_model, mni_slices):
    kspace, mask = head_scan(mni_slices[0], 3.0, 50.0, 1)
    reconstructor = KspaceReconstructor.load(small_model, device="cpu")
    messages = []
    both = reconstructor.reconstruct(np.stack([kspace, kspace]), progress=lambda f, m: messages.append((f, m)))
    assert both.shape == (2, *kspace.shape[-2:]) and both.dtype == np.float32
    assert [fraction for fraction, _ in messages] == [0.5, 1.0]
    # an identity denoiser + data consistency is a (few-iteration, regularised) SENSE reconstruction: close to
    # CG-SENSE of the same data, far from the aliased zero-filled image
    sense = np.abs(cg_sense(kspace, mask, box_coil_maps(kspace, calibration_box(mask))))
    zero_filled = np.sqrt(np.sum(np.abs(ifft2c(kspace)) ** 2, axis=0))
    assert psnr(both[0], sense) > 30.0 and psnr(both[0], sense) > psnr(zero_filled, sense) + 5.0
    complex_image = reconstructor.reconstruct(kspace, mask, complex_output=True)
    assert complex_image.dtype == np.complex64 and np.allclose(np.abs(complex_image), both[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(Cancelled):
        reconstructor.reconstruct(kspace, cancel=lambda: True)
    with pytest.raises(InputError, match="does not match the data"):
        reconstructor.reconstruct(kspace, np.zeros_like(mask) | (np.arange(mask.shape[1]) < 4))
    with pytest.raises(InputError, match="1 coil"):
        reconstructor.reconstruct(kspace[:1])


@pytest.mark.slow
def test_simulate_save_kspace_then_reconstruct_kspace(tmp_path, run_cli, small_model):
    """What a user does to try the raw path on their own magnitude volume."""
    from FastMRICommon.geometry import VolumeGeometry
    from FastMRICommon.volume_files import write_volume_array

    rng = np.random.default_rng(2)
    y, x = np.meshgrid(np.linspace(-1, 1, 64), np.linspace(-1, 1, 64), indexing="ij")
    head = ((x**2 + y**2) < 0.7) * (100 + 20 * rng.random((64, 64)))
    source = write_volume_array(np.stack([head, head]).astype(np.float32), VolumeGeometry(), tmp_path / "full.nrrd")
    result = run_cli(
        "fastmrrecon",
        "simulate",
        str(source),
        str(tmp_path / "sim.nrrd"),
        "--acceleration",
        "2",
        "--center-fraction",
        "0.15",
        "--save-kspace",
        str(tmp_path / "scan.h5"),
    )
    assert result.returncode == 0, result.stderr
    raw = read_raw_kspace(tmp_path / "scan.h5")
    assert raw.kspace.shape == (2, 8, 64, 64)
    result = run_cli(
        "fastmrrecon",
        "reconstruct-kspace",
        str(tmp_path / "scan.h5"),
        str(tmp_path / "out.nrrd"),
        "--model",
        str(small_model),
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    image, _ = read_volume_array(tmp_path / "out.nrrd")
    assert image.shape == (2, 64, 64) and psnr(image, np.stack([head, head])) > 20
    result = run_cli(
        "fastmrrecon",
        "reconstruct-kspace",
        str(tmp_path / "scan.h5"),
        str(tmp_path / "c.nii.gz"),
        "--model",
        str(small_model),
        "--complex",
    )
    assert result.returncode == 0, result.stderr
    import SimpleITK as sitk

    assert sitk.ReadImage(str(tmp_path / "c.nii.gz")).GetPixelID() == sitk.sitkComplexFloat32
    result = run_cli(
        "fastmrrecon",
        "reconstruct-kspace",
        str(tmp_path / "scan.h5"),
        str(tmp_path / "v.nrrd"),
        "--model",
        str(small_model),
        "--virtual-coils",
        "4",
        "--precision",
        "float32",
        "--refit",
    )
    assert result.returncode == 0, result.stderr
    compressed, _ = read_volume_array(tmp_path / "v.nrrd")
    assert psnr(compressed, np.stack([head, head])) > 20
    for args, message in (
        ((str(tmp_path / "c.nrrd"), "--complex"), "--complex writes NIfTI"),
        ((str(tmp_path / "x.nrrd"),), "no such k-space file"),
        ((str(tmp_path / "y.nrrd"), "--virtual-coils", "4", "--no-coil-compression"), "exclude each other"),
    ):
        source = str(tmp_path / "absent.npy") if "no such" in message else str(tmp_path / "scan.h5")
        result = run_cli("fastmrrecon", "reconstruct-kspace", source, *args, "--model", str(small_model))
        assert result.returncode == 2 and message in result.stderr
    result = run_cli(
        "fastmrrecon",
        "simulate",
        str(tmp_path / "full.nrrd"),
        str(tmp_path / "s2.nrrd"),
        "--acceleration",
        "2",
        "--save-kspace",
        str(tmp_path / "k.txt"),
    )
    assert result.returncode == 2 and "k-space is written as" in result.stderr
    assert not (tmp_path / "s2.nrrd").exists()


def test_module_logic_reconstructs_a_raw_kspace_file_into_a_new_volume(tmp_path, scene, small_model, mni_slices):
    from FastMRReconLib.kspace.raw_kspace import write_raw_kspace
    from FastMRReconLib.kspace_logic import reconstruct_kspace_node
    from FastMRReconLib.volume_logic import ReconstructorCache

    kspace, _ = head_scan(mni_slices[0], 2.0, 40.0, 3)
    path = write_raw_kspace(tmp_path / "scan.npy", kspace[None])
    cache = ReconstructorCache()
    network = cache.get(str(small_model), "cpu", kspace=True)
    assert cache.get(str(small_model), "cpu", kspace=True) is network  # loaded once
    before = scene.GetNumberOfNodes()
    node = reconstruct_kspace_node(scene, path, network)
    assert node.GetName() == "scan_kspace_network" and scene.GetNumberOfNodes() > before
    from slicer.util import arrayFromVolume

    assert arrayFromVolume(node).shape == (1, *kspace.shape[-2:])
    with pytest.raises(Cancelled):
        reconstruct_kspace_node(scene, path, network, cancel=lambda: True)


@pytest.mark.skipif(not (MODELS_DIR / KSPACE_MODEL).is_file(), reason="the k-space model is not shipped yet")
def test_shipped_kspace_model_beats_cg_sense_on_held_out_scans(mni_slices):
    """The shipped unrolled network on Poisson-disc and line-sampled scans of MNI152 (not a training object):
    better than CG-SENSE from the same calibration in PSNR and SSIM."""
    entry = read_manifest(MODELS_DIR)[KSPACE_MODEL]
    assert entry.sha256 == sha256_file(MODELS_DIR / KSPACE_MODEL)
    reconstructor = KspaceReconstructor.load(device="cpu")
    gains = []
    for index, image in enumerate(mni_slices):
        kspace, mask = head_scan(image, 4.0, 40.0, 10 + index, coils=8)
        sense = np.abs(cg_sense(kspace, mask, box_coil_maps(kspace, calibration_box(mask))))
        output = reconstructor.reconstruct(kspace)
        gains.append((psnr(output, image) - psnr(sense, image), ssim(output, image) - ssim(sense, image)))
    assert np.mean([g[0] for g in gains]) > 1.0 and np.mean([g[1] for g in gains]) > 0.01


def test_the_final_weight_is_chosen_by_cross_validation_from_the_data(mni_slices):
    """The shipped network on one MNI152 slice, Poisson R 4: without noise the left-out samples are best predicted
    by following the data more closely (a smaller final weight) than at SNR 8, where keeping the network's denoising
    (a large weight) predicts them best; each chosen image is within 1.5 dB (PSNR) of the better of the two extreme
    weights' images and at least 2 dB above the worse, the extremes' final steps run from the same network image
    (measured: noise-free 0.03 chosen, 45.6 dB, extremes 45.9 / 40.7, the grid's best 46.1 at 0.01; SNR 8: 3 chosen,
    25.6 dB, extremes 6.5 / 25.6)."""
    import torch

    reconstructor = KspaceReconstructor.load(device="cpu")
    image = mni_slices[0]
    chosen = {}
    for snr in (1e6, 8.0):
        kspace, mask = head_scan(image, 4.0, snr, 5, coils=8)
        output = reconstructor.reconstruct(kspace, mask)
        chosen[snr] = reconstructor.final_weights[0]
        acquired = acquired_mask(kspace, mask)
        maps = box_coil_maps(kspace, calibration_box(acquired))
        noise = kspace_noise_sd(kspace, acquired)
        # the extremes from the same network image (the cross-validation run's) and all samples, as reconstruct does
        _, network, batch = reconstructor.cross_validation(kspace, maps, acquired, noise)
        every = torch.from_numpy(kspace * acquired)[None] / batch["scale"][0]
        mask_t = torch.from_numpy(acquired.astype(np.float32))[None]
        extremes = [
            np.abs((final[0] * batch["scale"][0]).numpy())
            for final in final_consistency(network, every, batch["maps"], mask_t, [FINAL_WEIGHTS[0], FINAL_WEIGHTS[-1]])
        ]
        assert psnr(output, image) >= max(psnr(extreme, image) for extreme in extremes) - 1.5
        assert psnr(output, image) >= min(psnr(extreme, image) for extreme in extremes) + 2.0
    assert chosen[1e6] <= 0.1 < 1.0 <= chosen[8.0]


def test_held_out_samples_are_acquired_outside_the_calibration_block():
    mask = poisson_disc_mask((64, 48), 3.0, calibration=12, seed=2)
    held = held_out_samples(mask, 0.1, seed=4)
    rows, columns = calibration_box(mask)
    outside = mask.copy()
    outside[rows, columns] = False
    assert not held[rows, columns].any() and not (held & ~mask).any()
    assert held.sum() == int(0.1 * outside.sum())
    assert np.array_equal(held, held_out_samples(mask, 0.1, seed=4)) and not np.array_equal(
        held, held_out_samples(mask, 0.1, seed=5)
    )
    full_centre = np.zeros((32, 32), bool)
    full_centre[8:24, 8:24] = True
    assert not held_out_samples(full_centre, 0.1, seed=0).any()


def counting(monkeypatch, cls, name: str) -> list:
    """Replace ``cls.name`` by a wrapper that records each call; the list of calls."""
    calls: list = []
    original = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)
    return calls


def test_the_network_runs_once_per_slice_unless_refit(monkeypatch, small_model, mni_slices):
    """By default the cross-validation's network run is the only one (the final step brings in the held-out
    samples); ``refit`` runs the network again on all samples. Both images follow the data."""
    kspace, mask = head_scan(mni_slices[0], 3.0, 50.0, 1)
    runs = counting(monkeypatch, UnrolledNetwork, "forward")
    images = {}
    for refit in (False, True):
        runs.clear()
        images[refit] = KspaceReconstructor.load(small_model, device="cpu", refit=refit).reconstruct(kspace, mask)
        assert len(runs) == (2 if refit else 1)
    assert psnr(images[False], mni_slices[0]) > 25 and psnr(images[True], mni_slices[0]) > 25
    assert abs(psnr(images[False], mni_slices[0]) - psnr(images[True], mni_slices[0])) < 0.5


def test_many_coils_are_compressed_to_virtual_coils(monkeypatch, small_model, mni_slices):
    """16 coils are reconstructed as 8 virtual coils (the maps the network gets have 8), within 0.2 dB of all 16;
    data with no more coils than that are not touched; None reconstructs every coil."""
    import FastMRReconLib.model.kspace_reconstructor as module

    kspace, mask = head_scan(mni_slices[0], 3.0, 50.0, 2, coils=16)
    seen = []
    original = module.box_coil_maps
    monkeypatch.setattr(module, "box_coil_maps", lambda data, box: seen.append(data.shape[0]) or original(data, box))
    compressed = KspaceReconstructor.load(small_model, device="cpu", virtual_coils=8).reconstruct(kspace, mask)
    every = KspaceReconstructor.load(small_model, device="cpu", virtual_coils=None).reconstruct(kspace, mask)
    assert seen == [8, 16]
    assert abs(psnr(compressed, mni_slices[0]) - psnr(every, mni_slices[0])) < 0.2
    with pytest.raises(InputError, match="at least 2"):
        KspaceReconstructor.load(small_model, device="cpu", virtual_coils=1)
    with pytest.raises(InputError, match="unknown precision"):
        KspaceReconstructor.load(small_model, device="cpu", precision="half")
    few, few_mask = head_scan(mni_slices[0], 3.0, 50.0, 2, coils=6)
    np.testing.assert_array_equal(
        KspaceReconstructor.load(small_model, device="cpu", virtual_coils=8).reconstruct(few, few_mask),
        KspaceReconstructor.load(small_model, device="cpu", virtual_coils=None).reconstruct(few, few_mask),
    )


def test_final_consistency_stops_early_only_for_large_weights(monkeypatch, mni_slices):
    """A large final weight converges in a few Lanczos steps and stops there, within 1% of the converged solution;
    a small one takes every step (``FINAL_CONSISTENCY_ITERATIONS``)."""
    import torch

    from FastMRReconLib.model import kspace_reconstructor as module
    from FastMRReconLib.model.unrolled import SenseOperator, normalised_batch

    kspace, mask = head_scan(mni_slices[1], 4.0, 30.0, 3)
    maps = box_coil_maps(kspace, calibration_box(mask))
    tensors = [torch.from_numpy(np.ascontiguousarray(a))[None] for a in (kspace, maps, mask.astype(np.float32))]
    batch = normalised_batch(tensors[0], tensors[1], tensors[2], torch.tensor([0.01]), 0.03)
    start = batch["start"] * 0.9  # an image that does not fit the data
    steps = counting(monkeypatch, SenseOperator, "normal")
    (large,) = final_consistency(start, batch["kspace"], tensors[1], tensors[2], [1.0])
    assert 2 <= len(steps) < FINAL_CONSISTENCY_ITERATIONS // 2
    steps.clear()
    final_consistency(start, batch["kspace"], tensors[1], tensors[2], [0.003])
    assert len(steps) == FINAL_CONSISTENCY_ITERATIONS
    monkeypatch.setattr(module, "FINAL_CONSISTENCY_TOLERANCE", 0.0)
    (converged,) = final_consistency(start, batch["kspace"], tensors[1], tensors[2], [1.0])
    change = converged - start
    assert float(torch.linalg.vector_norm(large - converged) / torch.linalg.vector_norm(change)) < 0.01


def test_bfloat16_regulariser_changes_the_shipped_networks_image_little(mni_slices):
    """The regulariser in bfloat16 (what "auto" picks on CPUs with native bfloat16) gives the float32 image within
    0.1 dB PSNR; data consistency stays float32."""
    import torch

    kspace, mask = head_scan(mni_slices[0], 4.0, 40.0, 4)
    images = {}
    for precision in ("float32", "bfloat16"):
        reconstructor = KspaceReconstructor.load(device="cpu", precision=precision)
        images[precision] = reconstructor.reconstruct(kspace, mask)
        assert reconstructor.network.regulariser_autocast == (torch.bfloat16 if precision == "bfloat16" else None)
    assert abs(psnr(images["bfloat16"], mni_slices[0]) - psnr(images["float32"], mni_slices[0])) < 0.1
    assert not np.array_equal(images["bfloat16"], images["float32"])
