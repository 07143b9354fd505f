"""Stand-in for ``mamba_ssm.modules.mamba_simple``: the Mamba-1 layer is :class:`nnmamba_monai.ssm.Mamba`."""

from nnmamba_monai.ssm.mamba import Mamba

__all__ = ["Mamba"]
