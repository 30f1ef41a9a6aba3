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


def test_the_noise_weighted_loss_changes_training(objects):
    """The same run with and without the noise weights ends with other weights (the weights reach the loss)."""
    import torch

    plain = train(objects, replace(TINY, steps=2), [], "cpu").network.state_dict()
    weighted = train(objects, replace(TINY, steps=2, noise_weighted=True), [], "cpu").network.state_dict()
    assert not torch.allclose(plain["raw_mu"], weighted["raw_mu"])
