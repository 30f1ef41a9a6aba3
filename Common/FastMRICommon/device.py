"""Run-time choice of the torch device: CUDA when present (and asked for), otherwise the CPU."""

from __future__ import annotations

from typing import Callable

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


def torch_installed(module: str = "torch") -> bool:
    """True when ``module`` (torch) can be imported here; does not import it."""
    import importlib.util

    return importlib.util.find_spec(module) is not None


def ensure_torch(confirm: Callable[[str], bool], install: Callable[[], object], module: str = "torch") -> bool:
    """Make torch available only with the user's consent: True when ``module`` is importable, or after
    ``confirm(message)`` returned True and ``install()`` (in Slicer: the PyTorch extension's installer) made
    it importable; False when the user declined. Never called at import time."""
    if torch_installed(module):
        return True
    if not confirm("This needs PyTorch, which is not installed. Install it now through the PyTorch extension "
                   "(a download of several hundred MB; CUDA build when an NVIDIA GPU is present)?"):
        return False
    install()
    if not torch_installed(module):
        raise InputError("PyTorch could not be installed: install it from the PyTorch Utils module, then retry")
    return True
