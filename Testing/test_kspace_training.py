"""Training of the unrolled k-space network (``training.kspace_trainer``): resumable, the noise-weighted loss,
the faster data-consistency weights."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from FastMRReconLib.model.unrolled import UnrolledConfig, UnrolledNetwork
from FastMRReconLib.training.kspace_examples import KspaceExampleConfig
from FastMRReconLib.training.kspace_trainer import (
    NOISE_WEIGHT_FLOOR,
    NOISE_WEIGHT_REFERENCE,
    KspaceTrainingConfig,
    noise_loss_weights,
    train,
    training_loss,
)

TINY = KspaceTrainingConfig(
    steps=4,
    batch_size=2,
    lr=1e-3,
    seed=3,
    checkpoint_every=2,
    validate_every=100,
    network=UnrolledConfig(unrolls=2, channels=4, cg_iterations=2, regulariser="unet", depth=2, max_channels=8),
    examples=KspaceExampleConfig(patch=48, poisson_accelerations=(3.0,), calibration_block=12),
)


@pytest.fixture(scope="module")
def objects() -> list[np.ndarray]:
    """Magnitude objects: ellipses with texture."""
    rng = np.random.default_rng(0)
    y, x = np.meshgrid(np.linspace(-1, 1, 56), np.linspace(-1, 1, 56), indexing="ij")
    return [
        (x**2 / rng.uniform(0.4, 0.8) + y**2 / rng.uniform(0.5, 0.9) < 1) * (1 + 0.3 * np.sin(rng.uniform(3, 9) * x))
        for _ in range(4)
    ]


def test_noise_loss_weights_follow_the_inverse_noise_down_to_a_floor():
    import torch

    noise = torch.tensor(
        [NOISE_WEIGHT_REFERENCE, 4 * NOISE_WEIGHT_REFERENCE, NOISE_WEIGHT_FLOOR, NOISE_WEIGHT_FLOOR / 10]
    )
    weights = noise_loss_weights(noise)
    assert torch.allclose(weights, torch.tensor([1.0, 0.25, 5.0, 5.0]))


class Interrupted(Exception):
    pass


class StopsAfter(list):
    """Objects that interrupt the run (as a killed process would) at their ``count``-th use."""

    def __init__(self, items, count: int) -> None:
        super().__init__(items)
        self.left = count

    def __getitem__(self, index):
        self.left -= 1
        if self.left < 0:
            raise Interrupted
        return super().__getitem__(index)


def test_an_interrupted_run_resumes_from_its_checkpoint(objects, tmp_path):
    """Killed in step 3 (checkpoints every 2 steps), the run resumes at step 2 with its weights, optimiser and
    losses, and does the 2 steps left; a checkpoint of other settings is refused."""
    import torch

    from FastMRICommon.errors import InputError

    config = replace(TINY, noise_weighted=True, mu_lr_gain=10.0)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        train(StopsAfter(objects, 2 * config.batch_size), config, [], "cpu", checkpoint)
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["step"] == 2 and len(saved["losses"]) == 2
    resumed = train(StopsAfter(objects, 2 * config.batch_size), config, [], "cpu", checkpoint)
    assert resumed.losses[:2] == saved["losses"] and len(resumed.losses) == 4 and all(np.isfinite(resumed.losses))
    assert not torch.equal(resumed.network.state_dict()["raw_mu"], saved["network"]["raw_mu"])
    final = torch.load(checkpoint, weights_only=False)["optimiser"]
    assert [group["gain"] for group in final["param_groups"]] == [1.0, 10.0]
    assert all(float(state["step"]) == 4 for state in final["state"].values())  # Adam's moments carried on
    with pytest.raises(InputError, match="other settings"):
        train(objects, replace(config, lr=2e-3), [], "cpu", checkpoint)


def test_the_data_consistency_weights_learn_faster_with_their_gain(objects):
    """Adam's first step moves every parameter by about its learning rate: mu's raw parameters move ten times as
    far with mu_lr_gain 10, the regulariser's the same."""
    import torch

    moved = {}
    for gain in (1.0, 10.0):
        config = replace(TINY, steps=1, mu_lr_gain=gain, network=replace(TINY.network, noise_mu=True))
        torch.manual_seed(config.seed)
        initial = UnrolledNetwork(config.network).state_dict()
        result = train(objects, config, [], "cpu")
        final = result.network.state_dict()
        moved[gain] = {name: float((final[name] - initial[name]).abs().max()) for name in ("raw_mu", "mu_slope")}
        moved[gain]["head"] = float(
            (final["denoiser.unet.head.weight"] - initial["denoiser.unet.head.weight"]).abs().max()
        )
    for name in ("raw_mu", "mu_slope"):
        assert moved[10.0][name] == pytest.approx(10 * moved[1.0][name], rel=0.05), name
    assert moved[10.0]["head"] == pytest.approx(moved[1.0]["head"], rel=0.05)


def test_the_noise_weighted_loss_weighs_each_examples_l1_term():
    """training_loss: l1_weight x the mean of each example's mean |error| (times its noise weight when
    noise_weighted) + the mean (1 - SSIM); a clean example's error counts more than a noisy one's."""
    import torch

    from FastMRReconLib.metrics import ssim_torch

    torch.manual_seed(0)
    target = torch.randn(2, 24, 24, dtype=torch.complex64)
    output = target + 0.1 * torch.randn(2, 24, 24, dtype=torch.complex64)
    noise = torch.tensor([0.002, 0.04])
    l1 = (output - target).abs().mean(dim=(-2, -1))
    structure = (1 - ssim_torch(output.abs()[:, None], target.abs()[:, None], 1.0)).mean()
    plain = training_loss(output, target, noise, TINY)
    weighted = training_loss(output, target, noise, replace(TINY, noise_weighted=True))
    assert float(plain) == pytest.approx(float(TINY.l1_weight * l1.mean() + structure), rel=1e-5)
    expected = TINY.l1_weight * (l1 * torch.tensor([5.0, 0.25])).mean() + structure
    assert float(weighted) == pytest.approx(float(expected), rel=1e-5)


def test_a_model_file_of_the_first_design_loads_and_runs_as_before(tmp_path):
    """A model saved before the U-Net and per-noise mu existed (its config has none of their keys, its mu is one
    scalar) loads strictly as the CNN design with one shared mu."""
    import torch

    from FastMRICommon.model_files import ModelFile, load_model_file, save_model_file
    from FastMRReconLib.model.kspace_reconstructor import KSPACE_ARCHITECTURE, REGISTRY

    config = {"unrolls": 2, "channels": 4, "layers": 3, "cg_iterations": 2, "noise_input": True, "initial_mu": 0.5}
    old = UnrolledNetwork(UnrolledConfig(**config))
    state = old.state_dict()
    assert state["raw_mu"].shape == () and "mu_slope" not in state
    save_model_file(tmp_path / "old.pt", ModelFile(KSPACE_ARCHITECTURE, config, state, {}))
    network = load_model_file(tmp_path / "old.pt").build(REGISTRY)
    assert network.config.regulariser == "cnn" and not network.config.noise_mu
    assert torch.allclose(network.data_weights(torch.tensor([1e-3, 1e-1])), torch.tensor(0.5))


def test_line_masks_draw_their_calibration_share_from_the_range():
    """``calibration_share_range`` (0.04-0.16 of 128 lines: at least MIN_CALIBRATION + 2 = 10 lines, at most 20)
    makes the fully sampled centre of 1D masks vary from example to example; without it the centre is fixed (16
    lines, and any outer lines drawn next to it), as the benchmark's masks are."""
    from FastMRReconLib.kspace.raw_kspace import calibration_box
    from FastMRReconLib.training.kspace_examples import MaskSampler

    def centres(config: KspaceExampleConfig) -> list[int]:
        rng = np.random.default_rng(0)
        sampler = MaskSampler((128, 128), config, rng, pool=1)
        rows = [calibration_box(sampler("variable-density", 4.0, rng))[0] for _ in range(60)]
        return [block.stop - block.start for block in rows]

    drawn = centres(KspaceExampleConfig(calibration_share_range=(0.04, 0.16)))
    assert min(drawn) >= 10 and max(drawn) <= 24 and len(set(drawn)) >= 6
    assert sum(size <= 12 for size in drawn) >= 5 and sum(size >= 18 for size in drawn) >= 5
    fixed = centres(KspaceExampleConfig())  # 16 lines, grown by the outer lines drawn next to them
    assert min(fixed) == 16 and min(drawn) <= 11


def test_rectangular_crops_keep_their_shape_in_both_orientations(objects):
    """``patch_rows`` crops ``patch_rows x patch`` (rows: the phase-encoding axis of line masks) from the object
    or from its transpose, so the anatomy meets the phase-encoding axis both ways; the trainer runs on them."""
    from FastMRReconLib.training.kspace_examples import MaskSampler, simulate_example

    assert KspaceExampleConfig(patch=64).shape == (64, 64)
    config = KspaceExampleConfig(patch=24, patch_rows=48, poisson_accelerations=(3.0,), calibration_block=12)
    assert config.shape == (48, 24)
    rows = np.repeat(np.linspace(0, 1, 56)[:, None], 56, axis=1) + 0.5  # varies along rows only
    rng = np.random.default_rng(1)
    masks = MaskSampler(config.shape, config, rng, pool=1)
    along_rows = []
    for _ in range(16):
        example = simulate_example(rows, rng, masks, config)
        assert example.kspace.shape[1:] == example.target.shape == example.mask.shape == (48, 24)
        magnitude = np.abs(example.target)
        along_rows.append(np.ptp(magnitude.mean(axis=1)) > np.ptp(magnitude.mean(axis=0)))
    assert 0 < sum(along_rows) < len(along_rows)
    result = train(objects, replace(TINY, steps=2, examples=config), [], "cpu")
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))


def _phase_roughness(image: np.ndarray) -> float:
    """90th percentile of the wrapped phase gradient (rad per pixel) over the object of a complex image."""
    from FastMRReconLib.kspace.simulate import object_region

    inside = object_region(image)
    phase = np.angle(image)
    rows = np.angle(np.exp(1j * np.diff(phase, axis=0)))[:, :-1]
    columns = np.angle(np.exp(1j * np.diff(phase, axis=1)))[:-1]
    both = inside[:-1, :-1] & inside[1:, :-1] & inside[:-1, 1:]
    return float(np.percentile(np.hypot(rows, columns)[both], 90))


def test_tissue_phase_offsets_the_brightest_structure_and_adds_a_bounded_fine_field():
    """``tissue_phase``: the brightest tissue (a ring, as fat around a head) is offset in phase from the rest by one
    angle, and the fine field's SD stays within ``max_texture``; seeded, it repeats."""
    from FastMRReconLib.kspace.simulate import tissue_phase

    y, x = np.meshgrid(np.linspace(-1, 1, 96), np.linspace(-1, 1, 96), indexing="ij")
    radius = np.hypot(x, y)
    head = np.where(radius < 0.6, 1.0, 0.0) + np.where((radius >= 0.6) & (radius < 0.8), 3.0, 0.0)
    phase = tissue_phase(head, np.random.default_rng(4), max_texture=0.0)
    ring, brain = phase[(radius > 0.65) & (radius < 0.75)], phase[radius < 0.5]
    assert np.ptp(brain) < 1e-4 and np.ptp(ring) < 0.05  # no field: one offset, on the ring only
    assert abs(ring.mean() - brain.mean()) > 0.1
    fine = tissue_phase(head, np.random.default_rng(5), max_texture=0.5)
    assert fine[radius < 0.5].std() <= 0.5 + 1e-6
    assert np.array_equal(fine, tissue_phase(head, np.random.default_rng(5), max_texture=0.5))


def test_examples_get_tissue_phase_in_their_share_and_unchanged_draws_without_it(objects):
    """``tissue_phase_share`` 0 draws exactly the examples of before (the held-out set stays one series); at 1 every
    example's target carries a phase far rougher than the smooth one the coil maps absorb."""
    from FastMRReconLib.training.kspace_examples import MaskSampler, simulate_example

    def examples(config: KspaceExampleConfig) -> list:
        rng = np.random.default_rng(2)
        masks = MaskSampler(config.shape, config, rng, pool=1)
        return [simulate_example(obj * (1 + obj), rng, masks, config) for obj in objects]

    base = KspaceExampleConfig(patch=48, poisson_accelerations=(3.0,), calibration_block=12)
    before = examples(base)
    for first, second in zip(before, examples(replace(base, tissue_phase_share=0.0)), strict=True):
        assert np.array_equal(first.kspace, second.kspace) and np.array_equal(first.target, second.target)
    smooth = [_phase_roughness(example.target) for example in before]
    structured = [_phase_roughness(example.target) for example in examples(replace(base, tissue_phase_share=1.0))]
    assert max(smooth) < 0.05 and np.median(structured) > 2 * max(smooth)
