"""The three IVIM networks. Input: signals normalised by S0 (y = S_b / S_0), one row per voxel, and for a
noise-aware network (``noise_input``) one more column: the voxel's SNR as ``network_models.snr_feature``.
Output: (f, D, D*) with D, D* in mm²/s, inside the training prior's ranges; a network with ``uncertainty`` also
gives the SD of each, (f_sd, D_sd, D*_sd), from a small head that reads the input and the estimate (trained by
Gaussian negative log-likelihood on the estimate's error: Nix D.A. & Weigend A.S., Proc. IEEE ICNN 1994; the
estimate itself is trained as before, the head does not change it), then scaled per parameter so that +-1 SD
holds 68.3% of the validation errors (recalibration: Kuleshov V. et al., Proc. ICML 2018), as for a Gaussian.

- ``ScdnnNet``: sparse-coding deep network (after the SC-DNN of Zheng T. et al., "A Model-driven Deep Learning
  Method Based on Sparse Coding to Accelerate IVIM Imaging in Fetal Brain", Proc. ISMRM 2021, abstract 1333), an
  unrolled ISTA. Signal extraction (linear), dictionary layer A (learns phi^H), N iteration units
  x_{n+1} = H_lambda[A y + B x_n] (B learns I - phi^H phi; H_lambda a hard threshold with learnable lambda), a
  normalisation layer to [0, 1] summing to 1, then the coefficient vector splits into halves tied to
  discretised D (weight 1 - f) and D* (weight f): f = sum of the D* half, and each half, re-normalised, gives D
  or D* through its own linear-combination layer (initialised at the grid values).
- ``MlpNet``: a supervised q-space MLP (Golkov et al. style) with sigmoid-bounded outputs.
- ``IvimNet``: the same MLP trained without labels, physics-informed (IVIM-NET style: Barbieri S. et al.,
  Magn. Reson. Med. 83:312-321, 2020; Kaandorp M.P.T. et al., Magn. Reson. Med. 86:2250-2265, 2021): its loss
  compares the input signal with the IVIM curve of its own estimates (see ``training``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _hard_threshold(x: torch.Tensor, threshold: torch.Tensor, sharpness: float = 50.0) -> torch.Tensor:
    """0 below |threshold|, identity above. The forward pass is exact; the gradient flows through a steep
    sigmoid gate so that the threshold itself is learnable (straight-through estimator)."""
    if not torch.is_grad_enabled():  # inference: the exact gate only
        return x * (x.abs() > threshold.abs())
    soft_gate = torch.sigmoid(sharpness * (x.abs() - threshold.abs()))
    hard_gate = (x.abs() > threshold.abs()).to(x.dtype)
    return x * (soft_gate + (hard_gate - soft_gate).detach())


class IvimNetwork(nn.Module):
    """What the three networks share: ``n_inputs`` (b > 0 values, plus one for the SNR column when
    ``noise_input``) and the optional SD head. Subclasses define ``estimate(inputs) -> [n, 3]``."""

    parameter_scale: torch.Tensor  # buffer: the SD head works in units of each parameter's range top
    sd_calibration: torch.Tensor  # buffer (with the SD head): per-parameter scale of the SDs

    def __init__(self, n_bvalues: int, noise_input: bool, uncertainty: bool, scale: tuple[float, float, float]):
        super().__init__()
        self.n_inputs = n_bvalues + int(noise_input)
        self.noise_input, self.uncertainty = noise_input, uncertainty
        self.register_buffer("parameter_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        if uncertainty:
            self.sd_head = nn.Sequential(
                nn.Linear(self.n_inputs + 3, 64), nn.ELU(), nn.Linear(64, 64), nn.ELU(), nn.Linear(64, 3)
            )
            # set after training (``trainer.calibrate_sd``) so that +-1 SD holds 68.3% of the validation errors
            self.register_buffer("sd_calibration", torch.ones(3))

    def estimate(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[n, 3]`` (f, D, D*), or ``[n, 6]`` with their SDs when the network has the SD head."""
        estimate = self.estimate(inputs)
        if not self.uncertainty:
            return estimate
        return torch.cat([estimate, self.sd(inputs, estimate)], dim=1)

    def sd(self, inputs: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
        """The SD head's ``[n, 3]`` SDs (units of f, D, D*) for ``inputs`` and their ``estimate`` (not trained
        through: the head learns the error of the estimate, it does not move it)."""
        features = torch.cat([inputs, estimate.detach() / self.parameter_scale], dim=1)
        return torch.exp(self.sd_head(features).clamp(-12.0, 3.0)) * self.parameter_scale * self.sd_calibration


class ScdnnNet(IvimNetwork):
    """Sparse-coding deep network for IVIM (see the module docstring).

    n_bvalues: b > 0 values per voxel; dictionary_size: coefficients (even; halves tied to D and D*);
    units: ISTA iteration units; D_range, Dstar_range: grid of the linear-combination layers (mm²/s);
    noise_input, uncertainty: ``IvimNetwork``. With the SNR column, the signal extraction layer sees it and
    every hard threshold grows with the voxel's noise level (lambda_k + gamma_k / SNR: the threshold of ISTA
    scales with the noise SD).
    """

    def __init__(
        self,
        n_bvalues: int,
        dictionary_size: int = 600,
        units: int = 3,
        D_range: tuple[float, float] = (0.8e-3, 2.5e-3),
        Dstar_range: tuple[float, float] = (10e-3, 150e-3),
        noise_input: bool = False,
        uncertainty: bool = False,
    ):
        super().__init__(n_bvalues, noise_input, uncertainty, (1.0, D_range[1], Dstar_range[1]))
        if dictionary_size % 2:
            raise ValueError("dictionary_size must be even")
        half = dictionary_size // 2
        self.extract = nn.Linear(self.n_inputs, self.n_inputs)
        self.A = nn.Linear(self.n_inputs, dictionary_size, bias=False)
        iterations = [nn.Linear(dictionary_size, dictionary_size, bias=False) for _ in range(units)]
        self.B = nn.ModuleList(iterations)
        self.thresholds = nn.Parameter(torch.full((units + 1,), 0.01))
        if noise_input:
            self.noise_thresholds = nn.Parameter(torch.zeros(units + 1))
        with torch.no_grad():
            nn.init.eye_(self.extract.weight)
            self.extract.bias.zero_()
            for layer in iterations:
                layer.weight.mul_(0.1)
        self.D_values = nn.Parameter(torch.linspace(*D_range, half) * 1e3)  # in 10⁻³ mm²/s
        log_Dstar = torch.linspace(math.log(Dstar_range[0]), math.log(Dstar_range[1]), half)
        self.Dstar_values = nn.Parameter(torch.exp(log_Dstar) * 1e3)
        self.half_size = half  # not ``self.half``: that would hide nn.Module.half()

    def estimate(self, inputs: torch.Tensor) -> torch.Tensor:
        thresholds = self.thresholds[None, :]  # [1 or n, units + 1]
        if self.noise_input:
            from IVIMEstimatorLib.fits.network_models import inverse_snr

            thresholds = thresholds.abs() + self.noise_thresholds.abs()[None, :] * inverse_snr(inputs[:, -1:])
        c = self.A(self.extract(inputs))
        x = _hard_threshold(c, thresholds[:, :1])
        for index, layer in enumerate(self.B):
            x = _hard_threshold(c + layer(x), thresholds[:, index + 1 : index + 2])
        x = torch.relu(x)
        x = x / (x.sum(dim=1, keepdim=True) + 1e-8)  # normalisation layer: [0, 1], sums to 1
        tissue, perfusion = x[:, : self.half_size], x[:, self.half_size :]
        f = perfusion.sum(dim=1)
        D = (tissue / (tissue.sum(dim=1, keepdim=True) + 1e-8)) @ self.D_values
        Dstar = (perfusion / (perfusion.sum(dim=1, keepdim=True) + 1e-8)) @ self.Dstar_values
        return torch.stack([f, D * 1e-3, Dstar * 1e-3], dim=1)


class MlpNet(IvimNetwork):
    """Fully connected network: signals (and the SNR column when ``noise_input``) -> (f, D, D*) squashed into the
    given ranges by sigmoids; noise_input, uncertainty: ``IvimNetwork``."""

    low: torch.Tensor  # buffers (register_buffer)
    high: torch.Tensor

    def __init__(
        self,
        n_bvalues: int,
        width: int = 128,
        depth: int = 3,
        f_range: tuple[float, float] = (0.0, 1.0),
        D_range: tuple[float, float] = (0.0, 5e-3),
        Dstar_range: tuple[float, float] = (3e-3, 0.3),
        noise_input: bool = False,
        uncertainty: bool = False,
    ):
        super().__init__(n_bvalues, noise_input, uncertainty, (f_range[1], D_range[1], Dstar_range[1]))
        layers, size = [], self.n_inputs
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ELU()]
            size = width
        layers.append(nn.Linear(size, 3))
        self.body = nn.Sequential(*layers)
        self.register_buffer("low", torch.tensor([f_range[0], D_range[0], Dstar_range[0]]))
        self.register_buffer("high", torch.tensor([f_range[1], D_range[1], Dstar_range[1]]))

    def estimate(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.body(inputs))


class IvimNet(MlpNet):
    """IVIM-NET-style unsupervised estimator: MlpNet's architecture, trained on the signal residual."""


REGISTRY = {"ScdnnNet": ScdnnNet, "MlpNet": MlpNet, "IvimNet": IvimNet}
