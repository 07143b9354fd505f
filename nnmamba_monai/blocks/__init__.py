"""Reusable blocks: nnMamba's SSM layers, the skip scaling and the convolutional blocks."""

from nnmamba_monai.blocks.mic import MICCSSLayer, MICLayer, to_sequence, to_volume
from nnmamba_monai.blocks.residual import DoubleConv, ResidualBlock, make_stage
from nnmamba_monai.blocks.skip_scaling import SkipScaling

__all__ = [
    "DoubleConv",
    "MICCSSLayer",
    "MICLayer",
    "ResidualBlock",
    "SkipScaling",
    "make_stage",
    "to_sequence",
    "to_volume",
]
