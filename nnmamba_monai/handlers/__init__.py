"""Ignite event handlers MONAI does not provide."""

from nnmamba_monai.handlers.radial_error import MeanRadialError

__all__ = ["MeanRadialError"]
