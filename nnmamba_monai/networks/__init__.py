"""Networks in MONAI style (spatial_dims, in_channels, out_channels first)."""

from nnmamba_monai.networks.nnmamba_cls import nnMambaCls
from nnmamba_monai.networks.nnmamba_seg import nnMambaSeg
from nnmamba_monai.networks.segmamba import BiSegMamba, MultiSegMamba, SegMamba, SegMambaSkip

__all__ = ["BiSegMamba", "MultiSegMamba", "SegMamba", "SegMambaSkip", "nnMambaCls", "nnMambaSeg"]
