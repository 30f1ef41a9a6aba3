"""Code shared by the FastMRRecon and IVIMEstimator modules.

One home for each shared concern: errors and cancellation (``errors``), the torch device choice
(``device``), model files (``model_files``), the MRML bridge between numpy and Slicer nodes and files
(``mrml_bridge``), and the command-line harness (``cli``). Nothing here imports ``qt``, ``ctk`` or
``slicer.ScriptedLoadableModule``, so it runs inside Slicer and in a plain Python with ``slicer-core``.
"""

from .errors import Cancelled, InputError, ModelFileError

__all__ = ["Cancelled", "InputError", "ModelFileError"]
