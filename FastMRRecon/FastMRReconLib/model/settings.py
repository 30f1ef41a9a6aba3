"""What a user sets for a reconstruction: device, precision, strength, a given noise SD and the change map.

One home for each (``FastMRICommon.settings``): the module's parameter node fields and the options of
``fastmrrecon reconstruct`` are made from :class:`ReconstructionSettings`. Nothing here imports torch: Slicer
imports the module, and with it this file, before torch may be installed.

Strength: the factor on the noise level the network is told (0 tells it the image is noise-free, 1 the
measured level, at most ``MAX_STRENGTH``); the module offers the named ones of ``STRENGTHS``, the command
line also numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from FastMRICommon.device import DEVICE_CHOICES, PRECISION_CHOICES
from FastMRICommon.errors import InputError
from FastMRICommon.settings import check_settings, setting
from FastMRReconLib.kspace.simulate import MAX_MAGNITUDE

#: Named strengths, mildest first: the factor on the noise level the network is told.
STRENGTHS = {"low": 0.5, "medium": 1.0, "high": 1.5}
#: Largest strength accepted.
MAX_STRENGTH = 2.0


def check_noise_settings(noise_sd: float | None, strength: float) -> None:
    """One-line InputError for a noise SD (image units; None: measured) that is not a positive finite number,
    or a strength factor outside [0, ``MAX_STRENGTH``]."""
    if noise_sd is not None and not (np.isfinite(noise_sd) and noise_sd > 0):
        raise InputError(
            f"the noise SD must be a positive number (the image's units), got {noise_sd}; "
            "to treat the image as noise-free use strength 0"
        )
    if not (np.isfinite(strength) and 0 <= strength <= MAX_STRENGTH):
        raise InputError(f"the strength must be between 0 and {MAX_STRENGTH:g}, got {strength}")


@dataclass(frozen=True)
class ReconstructionSettings:
    """The module's *Reconstruct* settings (parameter node fields ``device``, ``strength``, ``setNoiseSD``,
    ``noiseSD``, ``changeMap``) and ``fastmrrecon reconstruct``'s ``--device``, ``--precision``,
    ``--strength`` and ``--noise-sd``. Making an instance checks every value (InputError naming the setting);
    :meth:`noise_arguments` also checks that a given noise SD is > 0. ``noise_sd`` is in the image's intensity
    units; it is used only with ``set_noise_sd`` (0 is the parameter node's unset value, refused when used)."""

    device: str = setting(
        "auto", "where the network runs: auto = CUDA when present, else the CPU", choices=DEVICE_CHOICES
    )
    precision: str = setting(
        "auto",
        "arithmetic of the network: auto = bfloat16 on a CPU with native bfloat16, else float32",
        choices=PRECISION_CHOICES,
    )
    strength: str = setting(
        "medium",
        "noise level the network is told, relative to the measured one: "
        + ", ".join(f"{name} {factor:g}" for name, factor in STRENGTHS.items()),
        choices=tuple(STRENGTHS),
    )
    set_noise_sd: bool = setting(
        False, "use noise_sd for every slice instead of measuring the noise", parameter="setNoiseSD"
    )
    noise_sd: float = setting(
        0.0,
        "noise SD of the input in its intensity units (> 0)",
        minimum=0.0,
        maximum=MAX_MAGNITUDE,
        parameter="noiseSD",
    )
    change_map: bool = setting(False, "also make the change map |output - input| / noise SD")

    def __post_init__(self) -> None:
        check_settings(self)

    def noise_arguments(self) -> tuple[float | None, float]:
        """``(noise_sd or None when measured, strength factor)`` for ``Reconstructor.reconstruct``; InputError
        for a given noise SD that is not > 0."""
        noise_sd = float(self.noise_sd) if self.set_noise_sd else None
        check_noise_settings(noise_sd, STRENGTHS[self.strength])
        return noise_sd, STRENGTHS[self.strength]
