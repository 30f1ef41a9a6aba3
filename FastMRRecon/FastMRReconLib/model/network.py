"""The reconstruction network: a residual U-Net followed by a fidelity network (fully convolutional).

Stage 1, ``ResidualUNet``: output = input + U-Net(input), i.e. it learns the noise and aliasing of the
accelerated image. Stage 2, ``FidelityNet``: takes the stage-1 output together with the original input
and produces the final image (stage-1 output + a learned correction), so that detail the U-Net removed
can be restored from the measured image. Both stage outputs are returned for the deep-supervision loss.

Noise-aware (``NetworkConfig.noise_input``): both stages also take a map of the input's noise SD (same
normalisation as the image) as an extra channel, as FFDNet does (Zhang, Zuo & Zhang, "FFDNet: Toward a fast
and flexible solution for CNN-based image denoising", IEEE TIP 2018), so one network applies the strength
each image needs and can leave a clean image alone; the map is measured by ``noise_level`` and may be scaled
by the user (``reconstructor``).

Images enter normalised (see ``reconstructor.slice_scales``); any height and width of at least
``ReconstructionNetwork.min_size`` pixels works: the input is padded by reflection to a multiple of 2**depth and
cropped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from FastMRICommon.errors import InputError


@dataclass(frozen=True)
class NetworkConfig:
    """U-Net width (channels of the first level, doubled per level up to ``max_channels``; None: no limit),
    depth (poolings) and fidelity width."""

    channels: int = 16
    depth: int = 4
    max_channels: int | None = 64
    fidelity_channels: int = 16
    fidelity_layers: int = 3
    #: A noise-SD map is a second input channel of both stages (module docstring).
    noise_input: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


#: Width of the noise-level embedding that conditions the U-Net (``ResidualUNet``).
NOISE_EMBEDDING = 32


def _activation() -> nn.LeakyReLU:
    """LeakyReLU(0.2), in place: it follows a convolution or a norm, whose backward pass does not need their
    output, so overwriting it saves a pass over memory."""
    return nn.LeakyReLU(0.2, inplace=True)


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.InstanceNorm2d(out_channels),
        _activation(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.InstanceNorm2d(out_channels),
        _activation(),
    )


class ResidualUNet(nn.Module):
    """U-Net predicting the residual (noise + aliasing) that is added to its input (``out_channels`` channels:
    one for a magnitude image, two for the real and imaginary parts of a complex one); ``in_channels`` counts the
    input's channels and the noise map's.

    With ``embedding`` > 0 every instance norm is followed by a feature-wise affine map (FiLM: Perez et al.,
    AAAI 2018) computed from an embedding of the image's noise level: instance norm removes any constant
    input channel, so a noise map fed only to the first convolution would lose its level. The maps start
    as the identity (zero weights)."""

    def __init__(
        self,
        channels: int,
        depth: int,
        max_channels: int | None = None,
        in_channels: int = 1,
        embedding: int = 0,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        widths = [min(channels * 2**level, max_channels or channels * 2**level) for level in range(depth + 1)]
        self.down = nn.ModuleList(
            [_block(in_channels, widths[0])] + [_block(widths[i], widths[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)])
        self.merge = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in range(depth)])
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.down_film = self.merge_film = None
        if embedding:
            self.down_film = nn.ModuleList([_film(embedding, width) for width in widths])
            self.merge_film = nn.ModuleList([_film(embedding, width) for width in widths[:-1]])

    @staticmethod
    def _run(
        block: nn.Sequential, film: nn.Module | None, x: torch.Tensor, embedding: torch.Tensor | None
    ) -> torch.Tensor:
        if film is None or embedding is None:
            return block(x)
        scales = film(embedding)[..., None, None].chunk(4, dim=1)  # (gamma, beta) after each of the two norms
        norms = 0
        for layer in block:
            x = layer(x)
            if isinstance(layer, nn.InstanceNorm2d):
                x = x * (1 + scales[2 * norms]) + scales[2 * norms + 1]
                norms += 1
        return x

    def forward(
        self, image: torch.Tensor, noise: torch.Tensor | None = None, embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        skips, x = [], image if noise is None else torch.cat([image, noise], dim=1)
        for level, block in enumerate(self.down):
            film = None if self.down_film is None else self.down_film[level]
            # self.down holds only _block()s (nn.ModuleList types its items as nn.Module)
            x = self._run(cast(nn.Sequential, block), film, x if level == 0 else F.avg_pool2d(x, 2), embedding)
            skips.append(x)
        x = skips.pop()
        for level in reversed(range(len(self.up))):
            film = None if self.merge_film is None else self.merge_film[level]
            merge = cast(nn.Sequential, self.merge[level])  # only _block()s
            x = self._run(merge, film, torch.cat([self.up[level](x), skips.pop()], dim=1), embedding)
        return image + self.head(x)


def conv_bias(conv: nn.Conv2d) -> torch.Tensor:
    """The bias of ``conv``, made by its default ``bias=True`` (torch types it as optional)."""
    if conv.bias is None:
        raise ValueError("this convolution was built without a bias")
    return conv.bias


def _film(embedding: int, width: int) -> nn.Linear:
    """The affine maps of one block's two norms: (gamma, beta) x 2 per channel, zero at the start."""
    layer = nn.Linear(embedding, 4 * width)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def noise_level_code(level: torch.Tensor) -> torch.Tensor:
    """log10 of normalised noise SDs, scaled to about [-1, 1] over 1e-4 to 1 (floored at 1e-5): the form in which
    networks take a noise level (``NoiseEmbedding``, ``unrolled.UnrolledNetwork.data_weights``)."""
    return (torch.log10(level.clamp(min=1e-5)) + 2) / 2


def pad_to_multiple(tensor: torch.Tensor, multiple: int) -> torch.Tensor:
    """``tensor`` (``[..., height, width]``) reflection-padded at the bottom and right to a multiple of ``multiple``
    (a U-Net of ``depth`` poolings needs ``2**depth``); crop the result back with ``[..., :height, :width]``."""
    height, width = tensor.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return tensor
    return F.pad(tensor, (0, pad_w, 0, pad_h), mode="reflect")


class NoiseEmbedding(nn.Module):
    """A feature vector from each image's noise level ``[batch]`` (the mean of its normalised noise map):
    log10 of it, scaled to about [-1, 1] over 1e-4 to 1, through a two-layer perceptron."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(1, width), nn.LeakyReLU(0.2), nn.Linear(width, width), nn.LeakyReLU(0.2))

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        return self.body(noise_level_code(level)[:, None])


class FidelityNet(nn.Module):
    """Final image from the stage-1 output and the original input: stage-1 output + a learned correction.

    Noise-aware (``gated``, with the noise map as a third input): the body gives a correction ``c`` and a
    per-pixel trust ``a`` = sigmoid(logit) in (0, 1): final = original + a (stage-1 - original) + c. With
    ``a`` = 0 and ``c`` = 0 the measured image passes unchanged, which a clean input must; ``a`` starts near
    1 (logit bias 4), the plain design's behaviour."""

    def __init__(self, channels: int, layers: int, in_channels: int = 2, gated: bool = False) -> None:
        super().__init__()
        self.gated = gated
        modules: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1), _activation()]
        for _ in range(layers - 2):
            modules += [nn.Conv2d(channels, channels, 3, padding=1), _activation()]
        last = nn.Conv2d(channels, 2 if gated else 1, 3, padding=1)
        modules.append(last)
        self.body = nn.Sequential(*modules)
        nn.init.zeros_(last.weight)  # starts as the identity on the stage-1 output
        nn.init.zeros_(conv_bias(last))
        if gated:
            with torch.no_grad():
                conv_bias(last)[1] = 4.0

    def forward(
        self, restored: torch.Tensor, original: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        inputs = [restored, original] + ([] if noise is None else [noise])
        out = self.body(torch.cat(inputs, dim=1))
        if not self.gated:
            return restored + out
        return original + torch.sigmoid(out[:, 1:]) * (restored - original) + out[:, :1]


class ReconstructionNetwork(nn.Module):
    """Residual U-Net + fidelity network; ``forward(image, noise)`` returns (stage-1 image, final image),
    same size as the input ``[batch, 1, height, width]``; ``noise`` (same shape: the noise SD map) is
    required when ``config.noise_input``, refused otherwise."""

    def __init__(self, config: NetworkConfig = NetworkConfig()) -> None:
        super().__init__()
        self.config = config
        extra = int(config.noise_input)
        self.unet = ResidualUNet(config.channels, config.depth, config.max_channels, 1 + extra, NOISE_EMBEDDING * extra)
        self.fidelity = FidelityNet(config.fidelity_channels, config.fidelity_layers, 2 + extra, config.noise_input)
        self.embedding = NoiseEmbedding(NOISE_EMBEDDING) if config.noise_input else None

    @property
    def min_size(self) -> int:
        """Smallest height/width accepted: the coarsest level must keep at least 2 x 2 pixels."""
        return 2 ** (self.config.depth + 1)

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        if min(height, width) < self.min_size:
            raise InputError(
                f"images must be at least {self.min_size} x {self.min_size} pixels, got {height} x {width}"
            )
        if (noise is not None) != self.config.noise_input:
            raise InputError(
                "this network " + ("needs a noise map" if self.config.noise_input else "takes no noise map")
            )
        multiple = 2**self.config.depth
        image_padded = pad_to_multiple(image, multiple)
        noise_padded = None if noise is None else pad_to_multiple(noise, multiple)
        if noise is None:
            embedding = None
        elif self.embedding is None:  # not reached: a noise map is refused above unless config.noise_input
            raise InputError("this network takes no noise map")
        else:
            embedding = self.embedding(noise.mean(dim=(1, 2, 3)))
        restored = self.unet(image_padded, noise_padded, embedding)
        final = self.fidelity(restored, image_padded, noise_padded)
        return restored[..., :height, :width], final[..., :height, :width]


def widened_state(old: dict, network: ReconstructionNetwork) -> dict:
    """The weights ``old`` of a network without noise input, for ``network`` (with it): the noise channel's
    input weights start at zero, so the widened network begins as the old one (a warm start)."""
    widened = dict(network.state_dict())  # the new parts (FiLM, embedding, gate) keep their initial values
    for key, value in old.items():
        target = widened[key]
        if value.shape[0] != target.shape[0]:  # the gated fidelity output: correction channel from the old
            continue
        if value.shape != target.shape:
            grown = torch.zeros_like(target)
            grown[:, : value.shape[1]] = value
            value = grown
        widened[key] = value
    return widened
