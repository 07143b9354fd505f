"""Convolutional building blocks of nnMamba: the double convolution and the residual block."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Norm

__all__ = ["DoubleConv", "ResidualBlock", "make_stage"]


class DoubleConv(nn.Module):
    """(conv3 -> BN -> ReLU) x 2, biased convolutions; the first one carries ``stride``.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: channels in and out.
        stride: stride of the first convolution.
        final_act: end with ReLU (True, as published) or stop after the second BN.

    State dict keys: ``conv.0`` conv, ``conv.1`` BN, ``conv.3`` conv, ``conv.4`` BN.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1, final_act: bool = True
    ) -> None:
        super().__init__()
        conv, bn = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        self.conv = nn.Sequential(
            conv(in_channels, out_channels, kernel_size=3, stride=stride, padding=1),
            bn(out_channels),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, kernel_size=3, padding=1),
            bn(out_channels),
            nn.ReLU(inplace=True) if final_act else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, *spatial) -> (B, out_channels, *spatial / stride)."""
        return self.conv(x)


class ResidualBlock(nn.Module):
    """ResNet basic block with an optional SSM layer added on the block input.

    out = BN(conv(ReLU(BN(conv(x))))); out += ssm_layer(x) if any; out += identity (1x1 conv + BN when the
    shape changes); ReLU. The SSM layer may be one module shared by several blocks (nnMamba shares one per
    stage); it is then listed under each block in the state dict and its tensors alias.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: channels in and out.
        stride: stride of the first convolution (and of the identity projection).
        ssm_layer: module mapping (B, in_channels, *spatial) to (B, out_channels, *spatial), or None.

    State dict keys: ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample`` (if any), ``mamba_layer`` (if any).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        ssm_layer: nn.Module | None = None,
    ) -> None:
        super().__init__()
        conv, bn = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        self.conv1 = conv(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = bn(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                conv(in_channels, out_channels, kernel_size=1, stride=stride, bias=False), bn(out_channels)
            )
        self.mamba_layer = ssm_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, *spatial) -> (B, out_channels, *spatial / stride)."""
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.mamba_layer is not None:
            out = out + self.mamba_layer(x)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def make_stage(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    num_blocks: int,
    shared_ssm_layer: nn.Module | None = None,
) -> nn.Sequential:
    """A stride-2 stage of ``num_blocks`` residual blocks; blocks 2..n share ``shared_ssm_layer``."""
    blocks = [ResidualBlock(spatial_dims, in_channels, out_channels, stride=2)]
    blocks += [
        ResidualBlock(spatial_dims, out_channels, out_channels, ssm_layer=shared_ssm_layer)
        for _ in range(num_blocks - 1)
    ]
    return nn.Sequential(*blocks)
