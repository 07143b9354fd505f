"""Networks in MONAI style (spatial_dims, in_channels, out_channels first)."""

from nnmamba_monai.networks.inference import FusedInference, fuse_for_inference
from nnmamba_monai.networks.nnmamba_cls import nnMambaCls
from nnmamba_monai.networks.nnmamba_seg import nnMambaSeg
from nnmamba_monai.networks.segmamba import BiSegMamba, MultiSegMamba, SegMamba, SegMambaSkip

__all__ = [
    "BiSegMamba",
    "FusedInference",
    "MultiSegMamba",
    "SegMamba",
    "SegMambaSkip",
    "fuse_for_inference",
    "nnMambaCls",
    "nnMambaSeg",
]
