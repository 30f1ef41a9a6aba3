"""Run-time choice of the torch device: CUDA when present (and asked for), otherwise the CPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import InputError

if TYPE_CHECKING:  # torch is imported lazily at run time (importing it is slow)
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")
#: Arithmetic of a network's inference: "auto" = bfloat16 on a CPU with native bfloat16 instructions
#: (AVX512-BF16 or AMX), float32 elsewhere; "float32"; "bfloat16".
PRECISION_CHOICES = ("auto", "float32", "bfloat16")
#: A torch device or its name ("cpu", "cuda", "cuda:1"): what ``Module.to`` and ``Tensor.to`` accept.
DeviceLike: TypeAlias = "str | torch.device"


def select_device(preference: str = "auto") -> torch.device:
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


def native_bfloat16_cpu() -> bool:
    """True when this CPU computes bfloat16 convolutions natively (oneDNN's check); False when unknown."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def select_precision(device: DeviceLike, preference: str = "auto") -> torch.dtype | None:
    """The autocast dtype for inference on ``device``: None (float32) or ``torch.bfloat16``; ``"auto"``
    (``PRECISION_CHOICES``) takes bfloat16 only on a CPU with native support, where it halves the time of a
    convolutional network; on a GPU and other CPUs it stays float32."""
    import torch

    preference = preference.lower()
    if preference not in PRECISION_CHOICES:
        raise InputError(f"unknown precision {preference!r}; choose one of {', '.join(PRECISION_CHOICES)}")
    if preference == "auto":
        preference = "bfloat16" if torch.device(device).type == "cpu" and native_bfloat16_cpu() else "float32"
    return torch.bfloat16 if preference == "bfloat16" else None


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
    if not confirm(
        "This needs PyTorch, which is not installed. Install it now through the PyTorch extension "
        "(a download of several hundred MB; CUDA build when an NVIDIA GPU is present)?"
    ):
        return False
    install()
    if not torch_installed(module):
        raise InputError("PyTorch could not be installed: install it from the PyTorch Utils module, then retry")
    return True


def ensure_torch_with_pytorch_utils(
    confirm: Callable[[str], bool], pytorch_utils_logic: Callable[[], Any] | None = None, module: str = "torch"
) -> bool:
    """:func:`ensure_torch` in Slicer, installing through the PyTorch extension: ``pytorch_utils_logic()`` (default:
    ``PyTorchUtils.PyTorchUtilsLogic``, imported only then) is made only when torch is missing and ``confirm``
    returned True, and its ``installTorch(askConfirmation=False)`` picks the CUDA or the CPU build (the user was
    asked already). The modules' ``torchReady`` is this with ``slicer.util.confirmOkCancelDisplay``. ``module``
    as in :func:`ensure_torch`."""

    def install() -> None:
        if pytorch_utils_logic is None:
            import PyTorchUtils  # Slicer's PyTorch extension (the extension depends on it)

            logic = PyTorchUtils.PyTorchUtilsLogic()
        else:
            logic = pytorch_utils_logic()
        logic.installTorch(askConfirmation=False)

    return ensure_torch(confirm, install, module)
