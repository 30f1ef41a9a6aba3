"""IVIMEstimator's engine: the IVIM signal model, the placenta phantom, the estimators (``IvimModel`` and its
``IvimFit``, in dipy's Model/Fit shape, and the one-call ``fit``) and motion correction.

Importing this package does not import torch: ``fit``, ``IvimModel`` and ``IvimFit`` are imported on first use
(module ``__getattr__``), as Slicer loads the module before torch may be installed.
"""

from __future__ import annotations

from FastMRICommon.lazy_exports import lazy_exports
from IVIMEstimatorLib.signal_model import ACCELERATED_BVALUES, ACQUIRED_BVALUES, add_rician_noise, ivim_signal

#: Names exported from submodules that need torch, imported when first used.
_LAZY = {"fit": "fits.estimate", "IvimModel": "fits.model", "IvimFit": "fits.model"}

__all__ = ["ACCELERATED_BVALUES", "ACQUIRED_BVALUES", "IvimFit", "IvimModel", "add_rician_noise", "fit", "ivim_signal"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
