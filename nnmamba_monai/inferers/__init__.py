"""Inferers MONAI does not provide."""

from nnmamba_monai.inferers.plain_tensor import PlainTensorInferer

__all__ = ["PlainTensorInferer"]
