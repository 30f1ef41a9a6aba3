"""The three IVIM networks. Input: signals normalised by S0 (y = S_b / S_0), one row per voxel.
Output: (f, D, D*) with D, D* in mm²/s, inside the training prior's ranges.

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


class ScdnnNet(nn.Module):
    """Sparse-coding deep network for IVIM (see the module docstring).

    n_bvalues: inputs per voxel; dictionary_size: coefficients (even; halves tied to D and D*);
    units: ISTA iteration units; D_range, Dstar_range: grid of the linear-combination layers (mm²/s).
    """

    def __init__(
        self,
        n_bvalues: int,
        dictionary_size: int = 600,
        units: int = 3,
        D_range: tuple[float, float] = (0.8e-3, 2.5e-3),
        Dstar_range: tuple[float, float] = (10e-3, 150e-3),
    ):
        super().__init__()
        if dictionary_size % 2:
            raise ValueError("dictionary_size must be even")
        half = dictionary_size // 2
        self.extract = nn.Linear(n_bvalues, n_bvalues)
        self.A = nn.Linear(n_bvalues, dictionary_size, bias=False)
        iterations = [nn.Linear(dictionary_size, dictionary_size, bias=False) for _ in range(units)]
        self.B = nn.ModuleList(iterations)
        self.thresholds = nn.Parameter(torch.full((units + 1,), 0.01))
        with torch.no_grad():
            nn.init.eye_(self.extract.weight)
            self.extract.bias.zero_()
            for layer in iterations:
                layer.weight.mul_(0.1)
        self.D_values = nn.Parameter(torch.linspace(*D_range, half) * 1e3)  # in 10⁻³ mm²/s
        log_Dstar = torch.linspace(math.log(Dstar_range[0]), math.log(Dstar_range[1]), half)
        self.Dstar_values = nn.Parameter(torch.exp(log_Dstar) * 1e3)
        self.half_size = half  # not ``self.half``: that would hide nn.Module.half()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        c = self.A(self.extract(y))
        x = _hard_threshold(c, self.thresholds[0])
        for index, layer in enumerate(self.B):
            x = _hard_threshold(c + layer(x), self.thresholds[index + 1])
        x = torch.relu(x)
        x = x / (x.sum(dim=1, keepdim=True) + 1e-8)  # normalisation layer: [0, 1], sums to 1
        tissue, perfusion = x[:, : self.half_size], x[:, self.half_size :]
        f = perfusion.sum(dim=1)
        D = (tissue / (tissue.sum(dim=1, keepdim=True) + 1e-8)) @ self.D_values
        Dstar = (perfusion / (perfusion.sum(dim=1, keepdim=True) + 1e-8)) @ self.Dstar_values
        return torch.stack([f, D * 1e-3, Dstar * 1e-3], dim=1)


class MlpNet(nn.Module):
    """Fully connected network: signals -> (f, D, D*) squashed into the given ranges by sigmoids."""

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
    ):
        super().__init__()
        layers, size = [], n_bvalues
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ELU()]
            size = width
        layers.append(nn.Linear(size, 3))
        self.body = nn.Sequential(*layers)
        self.register_buffer("low", torch.tensor([f_range[0], D_range[0], Dstar_range[0]]))
        self.register_buffer("high", torch.tensor([f_range[1], D_range[1], Dstar_range[1]]))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.body(y))


class IvimNet(MlpNet):
    """IVIM-NET-style unsupervised estimator: MlpNet's architecture, trained on the signal residual."""


REGISTRY = {"ScdnnNet": ScdnnNet, "MlpNet": MlpNet, "IvimNet": IvimNet}
