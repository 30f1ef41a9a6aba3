"""FastMRRecon's engine: k-space simulation of accelerated scans, synthetic head images, and (issue 5) the
residual U-Net + fidelity network reconstruction. Importing this package does not import torch."""

from .simulate import AcquisitionConfig, simulate_volume

__all__ = ["AcquisitionConfig", "simulate_volume"]
