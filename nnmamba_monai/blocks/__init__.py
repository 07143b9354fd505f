"""Reusable blocks: nnMamba's SSM layers, the skip scaling and the convolutional blocks."""

from nnmamba_monai.blocks.mic import MICCSSLayer, MICLayer
from nnmamba_monai.blocks.residual import DoubleConv, ResidualBlock, make_stage
from nnmamba_monai.blocks.skip_scaling import SkipScaling
from nnmamba_monai.blocks.voxel_mamba import (
    PAPER_AXIS_ORDERS,
    BiMambaTransBlock,
    BiVoxelMambaLayer,
    MambaTransBlock,
    MultiVoxelMambaLayer,
    VoxelMambaLayer,
    default_d_state,
)
from nnmamba_monai.blocks.voxel_sequence import on_voxel_sequence, to_sequence, to_volume

__all__ = [
    "PAPER_AXIS_ORDERS",
    "BiMambaTransBlock",
    "BiVoxelMambaLayer",
    "DoubleConv",
    "MICCSSLayer",
    "MICLayer",
    "MambaTransBlock",
    "MultiVoxelMambaLayer",
    "ResidualBlock",
    "SkipScaling",
    "VoxelMambaLayer",
    "default_d_state",
    "make_stage",
    "on_voxel_sequence",
    "to_sequence",
    "to_volume",
]
