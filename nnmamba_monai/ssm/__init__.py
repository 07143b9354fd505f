"""The SSM engine: a Mamba-1 layer and the selective scan behind interchangeable backends."""

from nnmamba_monai.ssm.dispatch import (
    BACKENDS,
    ENV_VAR,
    ScanBackend,
    available_backends,
    register_backend,
    resolve_backend,
    selective_scan,
    selective_scan_torch,
    selective_scan_triton,
)
from nnmamba_monai.ssm.inner import mamba_inner_fn
from nnmamba_monai.ssm.mamba import Mamba
from nnmamba_monai.ssm.scan_inputs import ScanInputs

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "Mamba",
    "ScanBackend",
    "ScanInputs",
    "available_backends",
    "mamba_inner_fn",
    "register_backend",
    "resolve_backend",
    "selective_scan",
    "selective_scan_torch",
    "selective_scan_triton",
]
