"""nnMamba as MONAI-native networks, with an SSM engine that needs no CUDA compile."""

from nnmamba_monai import bundle_config, bundle_overrides
from nnmamba_monai.checkpoint import load_authors_checkpoint
from nnmamba_monai.networks import BiSegMamba, MultiSegMamba, SegMamba, SegMambaSkip, nnMambaCls, nnMambaSeg
from nnmamba_monai.ssm import Mamba, available_backends, selective_scan

__version__ = "0.1.0"

__all__ = [
    "BiSegMamba",
    "Mamba",
    "MultiSegMamba",
    "SegMamba",
    "SegMambaSkip",
    "__version__",
    "available_backends",
    "bundle_config",
    "bundle_overrides",
    "load_authors_checkpoint",
    "nnMambaCls",
    "nnMambaSeg",
    "selective_scan",
]
