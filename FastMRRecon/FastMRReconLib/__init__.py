"""FastMRRecon's engine: k-space simulation of accelerated scans, synthetic head images, and the residual
U-Net + fidelity network reconstruction (``Reconstructor``).

Importing this package does not import torch: ``Reconstructor`` is imported on first use (module
``__getattr__``), as Slicer loads the module before torch may be installed.
"""

from __future__ import annotations

from FastMRICommon.lazy_exports import lazy_exports
from FastMRReconLib.kspace.simulate import AcquisitionConfig, simulate_volume

#: Names exported from submodules that need torch, imported when first used.
_LAZY = {"Reconstructor": "model.reconstructor"}

__all__ = ["AcquisitionConfig", "Reconstructor", "simulate_volume"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
