"""Stand-in for ``causal_conv1d`` in PyTorch (see ``nnmamba_monai.mamba_ssm_compat``)."""

from .causal_conv1d_interface import causal_conv1d_fn, causal_conv1d_update

__version__ = "1.4.0+nnmamba_monai"
__all__ = ["causal_conv1d_fn", "causal_conv1d_update"]
IS_NNMAMBA_MONAI_STAND_IN = True
