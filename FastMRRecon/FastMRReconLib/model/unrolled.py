"""An unrolled, data-consistent network for multi-coil Cartesian k-space (MoDL: Aggarwal, Mani and Jacob,
"MoDL: Model-Based Deep Learning Architecture for Inverse Problems", IEEE TMI 38(2), 2019).

The forward model is ``A x = M F S x``: coil sensitivities ``S`` (``[coils, rows, columns]``), the centred
orthonormal 2D FFT ``F`` (``kspace.fft``) and the sampling mask ``M``. Starting from a CG-SENSE image ``x0``,
each of ``unrolls`` iterations applies one learned denoiser ``D`` (the same weights every time) and then data
consistency::

    z_k = D(x_k),     x_{k+1} = argmin_x ||A x - y||² + mu ||x - z_k||²  =  (A^H A + mu I)^-1 (A^H y + mu z_k)

solved by ``cg_iterations`` conjugate-gradient steps started at ``z_k``; ``mu`` > 0 is learned: one for all
images, or (``noise_mu``) one per unroll and per noise level, ``mu_k = softplus(a_k + b_k l)`` with ``l`` the log10
of the normalised noise SD, scaled to about [-1, 1] over 1e-4 to 1. In MoDL's derivation ``mu`` is the ratio of the
noise variance to the prior's, so one shared value fits one noise level: trained over a wide SNR range, it is set
by the noisiest examples (their errors dominate the loss) and makes clean data be followed too loosely. ``D``
(``regulariser``) works on the real and imaginary parts and, when ``noise_input``, knows the image's noise SD:

- ``"cnn"`` (MoDL's): a residual CNN of ``layers`` 3x3 convolutions (``channels`` wide, ReLU, no normalisation,
  so the noise-level input, a constant channel, keeps its value); its receptive field is ``2 layers + 1`` pixels.
- ``"unet"`` (the regulariser of E2E-VarNet: Sriram et al., "End-to-End Variational Networks for Accelerated MRI
  Reconstruction", MICCAI 2020, there one per cascade, here one shared): the residual U-Net of the image-domain
  network (``network.ResidualUNet``, ``depth`` poolings, ``channels`` doubling per level up to
  ``max_channels``), the noise level entering as a map and through FiLM after every instance norm. Its receptive
  field spans tens of pixels, which regular (equispaced) undersampling's aliasing and its g-factor noise need.

Images are normalised (``scale``: the 99th percentile of ``|x0|``) by the caller (``KspaceReconstructor``); the
noise level is in the same units.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
from torch import nn

from FastMRICommon.errors import InputError
from FastMRReconLib.model.network import (
    NOISE_EMBEDDING,
    NoiseEmbedding,
    ResidualUNet,
    conv_bias,
    noise_level_code,
    pad_to_multiple,
)

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
    #: ``"cnn"`` or ``"unet"`` (module docstring); ``layers`` shapes the CNN, ``depth`` and ``max_channels`` the U-Net.
    regulariser: str = "cnn"
    #: ``mu`` per unroll and per noise level (module docstring) instead of one shared value.
    noise_mu: bool = False
    depth: int = 3
    max_channels: int = 128

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
    (1 where acquired).

    ``normal`` (``A^H A``, what conjugate gradients apply) skips the centring shifts of the coil images and, when
    the mask is the same in every column (1D undersampling of the rows; or in every row), the FFT along the fully
    sampled axis, which cancels in ``F^H M F``: with ``P`` the centring shift (``fftshift``) and its inverse
    ``P^-1`` (``ifftshift``), ``A^H A x = P sum_c conj(P^-1 S_c) F^H (P^-1 M) F ((P^-1 S_c)(P^-1 x))``. A 1D FFT
    along the rows runs on transposed arrays (an FFT along the contiguous axis is the faster). A line mask with
    single samples left out (the reconstructor's cross-validation) is a 2D mask: there both FFTs run."""

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor) -> None:
        self.maps, self.mask = maps, mask[:, None].to(maps.real.dtype)
        self._normal: tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...], bool] | None = None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return fft2c(self.maps * image[:, None]) * self.mask

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        return torch.sum(self.maps.conj() * ifft2c(kspace * self.mask), dim=1)

    def _normal_parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...], bool]:
        """(shifted maps, their conjugate, shifted mask, FFT axes, transposed?) of ``normal``, made once."""
        if self._normal is None:
            maps = torch.fft.ifftshift(self.maps, dim=(-2, -1))
            mask = torch.fft.ifftshift(self.mask, dim=(-2, -1))
            axes: tuple[int, ...] = (-2, -1)
            transposed = bool((self.mask == self.mask[..., :1]).all())  # the same in every column
            if transposed:
                maps, mask, axes = maps.transpose(-2, -1).contiguous(), mask.transpose(-2, -1).contiguous(), (-1,)
            elif bool((self.mask == self.mask[..., :1, :]).all()):  # the same in every row
                axes = (-1,)
            self._normal = (maps, maps.conj().resolve_conj(), mask, axes, transposed)
        return self._normal

    def normal(self, image: torch.Tensor) -> torch.Tensor:
        maps, maps_conj, mask, axes, transposed = self._normal_parts()
        image = torch.fft.ifftshift(image, dim=(-2, -1))
        if transposed:
            image = image.transpose(-2, -1)
        coils = torch.fft.fftn(maps * image[:, None], dim=axes, norm="ortho")
        combined = torch.sum(maps_conj * torch.fft.ifftn(coils * mask, dim=axes, norm="ortho"), dim=1)
        if transposed:
            combined = combined.transpose(-2, -1)
        return torch.fft.fftshift(combined, dim=(-2, -1))


def inner_real(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``Re sum conj(first) second`` over each complex image of a batch ``[batch, rows, columns]``, as ``[batch, 1,
    1]`` (on real views: complex reductions are tens of times slower on the CPU)."""
    return torch.sum(torch.view_as_real(first) * torch.view_as_real(second), dim=(-3, -2, -1))[:, None, None]


def conjugate_gradient(
    operator: SenseOperator, rhs: torch.Tensor, mu: torch.Tensor, start: torch.Tensor, iterations: int
) -> torch.Tensor:
    """``iterations`` CG steps on ``(A^H A + mu) x = rhs`` from ``start`` (batched; every step differentiable)."""

    def apply(x: torch.Tensor) -> torch.Tensor:
        return operator.normal(x) + mu * x

    x = start
    residual = rhs - apply(x)
    direction = residual
    power = inner_real(residual, residual)
    for _ in range(iterations):
        product = apply(direction)
        alpha = power / torch.clamp(inner_real(direction, product), min=1e-12)
        x = x + alpha * direction
        residual = residual - alpha * product
        new_power = inner_real(residual, residual)
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
        residual = self.body(torch.stack(parts, dim=1)).to(image.real.dtype)  # also under autocast
        return image + torch.complex(residual[:, 0], residual[:, 1])


class UNetDenoiser(nn.Module):
    """Residual U-Net on a complex image ``[batch, rows, columns]`` (+ the noise level as a map and through FiLM);
    any size: reflection-padded to a multiple of ``2**depth`` and cropped back. Starts as the identity."""

    def __init__(self, channels: int, depth: int, max_channels: int, noise_input: bool) -> None:
        super().__init__()
        extra = int(noise_input)
        self.unet = ResidualUNet(channels, depth, max_channels, 2 + extra, NOISE_EMBEDDING * extra, out_channels=2)
        nn.init.zeros_(self.unet.head.weight)
        nn.init.zeros_(conv_bias(self.unet.head))
        self.embedding = NoiseEmbedding(NOISE_EMBEDDING) if noise_input else None
        self.multiple = 2**depth

    def forward(self, image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        rows, columns = image.shape[-2:]
        parts = pad_to_multiple(torch.stack([image.real, image.imag], dim=1), self.multiple)
        noise_map = embedding = None
        if self.embedding is not None:
            noise_map = (NOISE_GAIN * noise)[:, None, None, None].expand(-1, 1, *parts.shape[-2:])
            embedding = self.embedding(noise)
        out = self.unet(parts, noise_map, embedding)[..., :rows, :columns].to(image.real.dtype)  # autocast
        return torch.complex(out[:, 0], out[:, 1])


def make_denoiser(config: UnrolledConfig) -> nn.Module:
    """The regulariser ``config.regulariser`` names (module docstring)."""
    if config.regulariser == "cnn":
        return Denoiser(config.channels, config.layers, config.noise_input)
    if config.regulariser == "unet":
        return UNetDenoiser(config.channels, config.depth, config.max_channels, config.noise_input)
    raise InputError(f"unknown regulariser {config.regulariser!r}: expected 'cnn' or 'unet'")


class UnrolledNetwork(nn.Module):
    """MoDL-style unrolled network (module docstring). ``forward(start, kspace, maps, mask, noise)``: the
    normalised CG-SENSE image ``[batch, rows, columns]`` complex, the normalised k-space and coil maps
    ``[batch, coils, rows, columns]`` complex, the mask ``[batch, rows, columns]`` and the normalised noise SD
    ``[batch]``; returns the reconstructed complex image ``[batch, rows, columns]``."""

    #: The parameters that make ``mu`` (``data_weights``), as ``named_parameters`` names them.
    DATA_WEIGHT_PARAMETERS = ("raw_mu", "mu_slope")

    def __init__(self, config: UnrolledConfig = UnrolledConfig()) -> None:
        super().__init__()
        self.config = config
        self.denoiser = make_denoiser(config)
        # mu = softplus(raw + slope * level) > 0
        raw = float(torch.log(torch.expm1(torch.tensor(config.initial_mu))))
        if config.noise_mu:
            self.raw_mu = nn.Parameter(torch.full((config.unrolls,), raw))
            self.mu_slope = nn.Parameter(torch.zeros(config.unrolls))
        else:
            self.raw_mu = nn.Parameter(torch.tensor(raw))
        #: Autocast dtype of the regulariser (None: float32; ``FastMRICommon.device.select_precision``); data
        #: consistency is always computed in float32.
        self.regulariser_autocast: torch.dtype | None = None

    @property
    def mu(self) -> torch.Tensor:
        """``mu`` (shared), or its mean over the unrolls at a normalised noise SD of 0.01 (``noise_mu``)."""
        return nn.functional.softplus(self.raw_mu).mean()

    def data_weights(self, noise: torch.Tensor) -> torch.Tensor:
        """``mu`` of every unroll for every image, ``[unrolls, batch, 1, 1]``, from the normalised noise SD
        ``[batch]`` (module docstring)."""
        if not self.config.noise_mu:
            return nn.functional.softplus(self.raw_mu).expand(self.config.unrolls, noise.shape[0], 1, 1)
        level = noise_level_code(noise)
        return nn.functional.softplus(self.raw_mu[:, None] + self.mu_slope[:, None] * level[None])[..., None, None]

    def forward(
        self, start: torch.Tensor, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        operator = SenseOperator(maps, mask)
        rhs = operator.adjoint(kspace)
        x = start
        for mu in self.data_weights(noise):
            autocast = (
                contextlib.nullcontext()
                if self.regulariser_autocast is None
                else torch.autocast(x.device.type, dtype=self.regulariser_autocast)
            )
            with autocast:
                z = self.denoiser(x, noise)
            x = conjugate_gradient(operator, rhs + mu * z, mu, z, self.config.cg_iterations)
        return x
