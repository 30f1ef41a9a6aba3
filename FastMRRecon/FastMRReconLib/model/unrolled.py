"""An unrolled, data-consistent network for multi-coil Cartesian k-space (MoDL: Aggarwal, Mani and Jacob,
"MoDL: Model-Based Deep Learning Architecture for Inverse Problems", IEEE TMI 38(2), 2019).

The forward model is ``A x = M F S x``: coil sensitivities ``S`` (``[coils, rows, columns]``), the centred
orthonormal 2D FFT ``F`` (``kspace.fft``) and the sampling mask ``M``. Starting from a CG-SENSE image ``x0``,
each of ``unrolls`` iterations applies one learned denoiser ``D`` (the same weights every time) and then data
consistency::

    z_k = D(x_k),     x_{k+1} = argmin_x ||A x - y||² + mu ||x - z_k||²  =  (A^H A + mu I)^-1 (A^H y + mu z_k)

solved by ``cg_iterations`` conjugate-gradient steps started at ``z_k``; ``mu`` > 0 is learned. ``D`` is a
residual CNN of ``layers`` 3x3 convolutions (``channels`` wide, ReLU, no normalisation, so the noise-level
input keeps its value) on the real and imaginary parts and, when ``noise_input``, a constant channel with the
image's noise SD: the network knows how noisy its input is.

Images are normalised (``scale``: the 99th percentile of ``|x0|``) by the caller (``KspaceReconstructor``); the
noise level is in the same units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from FastMRReconLib.model.network import conv_bias

#: Multiplies the normalised noise SD fed to the denoiser (so that its typical values, 0.002-0.3, are O(0.1-1)).
NOISE_GAIN = 10.0


@dataclass(frozen=True)
class UnrolledConfig:
    """Shape of the unrolled network (module docstring)."""

    unrolls: int = 5
    channels: int = 48
    layers: int = 5
    cg_iterations: int = 6
    noise_input: bool = True
    initial_mu: float = 0.5

    def as_dict(self) -> dict:
        return asdict(self)


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two axes (``kspace.fft.fft2c`` in torch)."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(image, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse 2D FFT over the last two axes."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


class SenseOperator:
    """``A = M F S`` of a batch: ``maps [batch, coils, rows, columns]`` complex, ``mask [batch, rows, columns]``
    (1 where acquired)."""

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor) -> None:
        self.maps, self.mask = maps, mask[:, None].to(maps.real.dtype)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return fft2c(self.maps * image[:, None]) * self.mask

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        return torch.sum(self.maps.conj() * ifft2c(kspace * self.mask), dim=1)

    def normal(self, image: torch.Tensor) -> torch.Tensor:
        return self.adjoint(self.forward(image))


def conjugate_gradient(
    operator: SenseOperator, rhs: torch.Tensor, mu: torch.Tensor, start: torch.Tensor, iterations: int
) -> torch.Tensor:
    """``iterations`` CG steps on ``(A^H A + mu) x = rhs`` from ``start`` (batched; every step differentiable)."""

    def apply(x: torch.Tensor) -> torch.Tensor:
        return operator.normal(x) + mu * x

    x = start
    residual = rhs - apply(x)
    direction = residual
    power = torch.sum(residual.abs() ** 2, dim=(-2, -1), keepdim=True)
    for _ in range(iterations):
        product = apply(direction)
        alpha = power / torch.clamp(torch.sum((direction.conj() * product).real, dim=(-2, -1), keepdim=True), min=1e-12)
        x = x + alpha * direction
        residual = residual - alpha * product
        new_power = torch.sum(residual.abs() ** 2, dim=(-2, -1), keepdim=True)
        direction = residual + (new_power / torch.clamp(power, min=1e-24)) * direction
        power = new_power
    return x


def sense_start(
    kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, regularization: float, iterations: int = 15
) -> torch.Tensor:
    """CG-SENSE images ``[batch, rows, columns]`` of a batch (``kspace.sense.cg_sense`` in torch: Tikhonov
    ``regularization``, the solution times ``1 + regularization``), without gradients."""
    with torch.no_grad():
        operator = SenseOperator(maps, mask)
        rhs = operator.adjoint(kspace)
        mu = torch.tensor(regularization, dtype=rhs.real.dtype, device=rhs.device)
        return conjugate_gradient(operator, rhs, mu, torch.zeros_like(rhs), iterations) * (1.0 + regularization)


def normalised_batch(
    kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, noise_sd: torch.Tensor, regularization: float
) -> dict:
    """The network's inputs from a batch of acquisitions: the CG-SENSE start, and the k-space, start and noise SD
    divided by ``scale``, the 99th percentile of ``|start|`` per image (``[batch]``, also returned)."""
    start = sense_start(kspace, maps, mask, regularization)
    scale = torch.quantile(start.abs().flatten(1), 0.99, dim=1).clamp(min=1e-12)
    return {
        "start": start / scale[:, None, None],
        "kspace": kspace / scale[:, None, None, None],
        "noise": noise_sd / scale,
        "scale": scale,
    }


class Denoiser(nn.Module):
    """Residual CNN on a complex image ``[batch, rows, columns]`` (+ a noise-level channel)."""

    def __init__(self, channels: int, layers: int, noise_input: bool) -> None:
        super().__init__()
        inputs = 3 if noise_input else 2
        modules: list[nn.Module] = [nn.Conv2d(inputs, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            modules += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        last = nn.Conv2d(channels, 2, 3, padding=1)
        modules.append(last)
        nn.init.zeros_(last.weight)  # starts as the identity
        nn.init.zeros_(conv_bias(last))
        self.body = nn.Sequential(*modules)
        self.noise_input = noise_input

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        parts = [image.real, image.imag]
        if self.noise_input:
            parts.append((NOISE_GAIN * noise)[:, None, None].expand_as(image.real))
        residual = self.body(torch.stack(parts, dim=1))
        return image + torch.complex(residual[:, 0], residual[:, 1])


class UnrolledNetwork(nn.Module):
    """MoDL-style unrolled network (module docstring). ``forward(start, kspace, maps, mask, noise)``: the
    normalised CG-SENSE image ``[batch, rows, columns]`` complex, the normalised k-space and coil maps
    ``[batch, coils, rows, columns]`` complex, the mask ``[batch, rows, columns]`` and the normalised noise SD
    ``[batch]``; returns the reconstructed complex image ``[batch, rows, columns]``."""

    def __init__(self, config: UnrolledConfig = UnrolledConfig()) -> None:
        super().__init__()
        self.config = config
        self.denoiser = Denoiser(config.channels, config.layers, config.noise_input)
        # mu = softplus(raw) > 0
        self.raw_mu = nn.Parameter(torch.tensor(float(torch.log(torch.expm1(torch.tensor(config.initial_mu))))))

    @property
    def mu(self) -> torch.Tensor:
        return nn.functional.softplus(self.raw_mu)

    def forward(
        self, start: torch.Tensor, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        operator = SenseOperator(maps, mask)
        rhs = operator.adjoint(kspace)
        x, mu = start, self.mu
        for _ in range(self.config.unrolls):
            z = self.denoiser(x, noise)
            x = conjugate_gradient(operator, rhs + mu * z, mu, z, self.config.cg_iterations)
        return x
