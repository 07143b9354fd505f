"""Stand-in for ``mamba_ssm`` served by nnmamba_monai's SSM engine (see ``nnmamba_monai.mamba_ssm_compat``)."""

from .modules.mamba_simple import Mamba
from .ops.selective_scan_interface import mamba_inner_fn, selective_scan_fn

__version__ = "2.2.4+nnmamba_monai"
__all__ = ["Mamba", "mamba_inner_fn", "selective_scan_fn"]
IS_NNMAMBA_MONAI_STAND_IN = True


def __getattr__(name: str):
    raise AttributeError(
        f"module 'mamba_ssm' has no attribute {name!r}: nnmamba_monai's stand-in for mamba_ssm provides Mamba "
        "(Mamba-1), selective_scan_fn and mamba_inner_fn only"
    )
