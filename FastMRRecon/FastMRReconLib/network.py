"""The reconstruction network: a residual U-Net followed by a fidelity network (fully convolutional).

Stage 1, ``ResidualUNet``: output = input + U-Net(input), i.e. it learns the noise and aliasing of the
accelerated image. Stage 2, ``FidelityNet``: takes the stage-1 output together with the original input
and produces the final image (stage-1 output + a learned correction), so that detail the U-Net removed
can be restored from the measured image. Both stage outputs are returned for the deep-supervision loss.

Images enter normalised (see ``reconstructor.slice_scales``); any height and width of at least
``ReconstructionNetwork.min_size`` pixels works: the input is padded by reflection to a multiple of 2**depth and cropped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

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
    max_channels: Optional[int] = 64
    fidelity_channels: int = 16
    fidelity_layers: int = 3

    def as_dict(self) -> dict:
        return asdict(self)


def _activation() -> nn.LeakyReLU:
    """LeakyReLU(0.2), in place: it follows a convolution or a norm, whose backward pass does not need their
    output, so overwriting it saves a pass over memory (about 10% of CPU inference time)."""
    return nn.LeakyReLU(0.2, inplace=True)


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.InstanceNorm2d(out_channels), _activation(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.InstanceNorm2d(out_channels), _activation())


class ResidualUNet(nn.Module):
    """U-Net predicting the residual (noise + aliasing) that is added to its one-channel input."""

    def __init__(self, channels: int, depth: int, max_channels: Optional[int] = None) -> None:
        super().__init__()
        widths = [min(channels * 2**level, max_channels or channels * 2**level) for level in range(depth + 1)]
        self.down = nn.ModuleList([_block(1, widths[0])] + [_block(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)])
        self.merge = nn.ModuleList([_block(2 * widths[i], widths[i]) for i in range(depth)])
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips, x = [], image
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for level in reversed(range(len(self.up))):
            x = self.merge[level](torch.cat([self.up[level](x), skips.pop()], dim=1))
        return image + self.head(x)


class FidelityNet(nn.Module):
    """Final image from the stage-1 output and the original input: stage-1 output + a learned correction."""

    def __init__(self, channels: int, layers: int) -> None:
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(2, channels, 3, padding=1), _activation()]
        for _ in range(layers - 2):
            modules += [nn.Conv2d(channels, channels, 3, padding=1), _activation()]
        modules.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.body = nn.Sequential(*modules)
        nn.init.zeros_(self.body[-1].weight)  # starts as the identity on the stage-1 output
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, restored: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        return restored + self.body(torch.cat([restored, original], dim=1))


class ReconstructionNetwork(nn.Module):
    """Residual U-Net + fidelity network; ``forward`` returns (stage-1 image, final image), same size as
    the input ``[batch, 1, height, width]``."""

    def __init__(self, config: NetworkConfig = NetworkConfig()) -> None:
        super().__init__()
        self.config = config
        self.unet = ResidualUNet(config.channels, config.depth, config.max_channels)
        self.fidelity = FidelityNet(config.fidelity_channels, config.fidelity_layers)

    @property
    def min_size(self) -> int:
        """Smallest height/width accepted: the coarsest level must keep at least 2 x 2 pixels."""
        return 2 ** (self.config.depth + 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        if min(height, width) < self.min_size:
            raise InputError(f"images must be at least {self.min_size} x {self.min_size} pixels, got {height} x {width}")
        multiple = 2**self.config.depth
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        padded = F.pad(image, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else image
        restored = self.unet(padded)
        final = self.fidelity(restored, padded)
        return restored[..., :height, :width], final[..., :height, :width]
