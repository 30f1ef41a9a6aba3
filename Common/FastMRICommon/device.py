"""Run-time choice of the torch device: CUDA when present (and asked for), otherwise the CPU."""

from __future__ import annotations

from .errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def select_device(preference: str = "auto") -> "torch.device":  # noqa: F821 (torch imported lazily)
    """Return the torch device for ``preference``: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``
    or ``"cuda"`` (an :class:`InputError` when no CUDA device is present)."""
    import torch

    preference = preference.lower()
    if preference not in DEVICE_CHOICES:
        raise InputError(f"unknown device {preference!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was requested but no CUDA device is available; use 'cpu' or 'auto'")
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(preference)


def available_devices() -> list[str]:
    """Names of the devices usable here, CPU first (for a device selector in the GUI)."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
