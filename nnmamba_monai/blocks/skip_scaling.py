"""Squeeze-and-excitation scaling of a U-Net skip connection (nnMamba's ``att1..3``)."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["SkipScaling"]


class SkipScaling(nn.Module):
    """x * sigmoid(layer2(ReLU(layer1(global_avg_pool(x))))), one weight per channel.

    Args:
        channels: C of the skip feature map.
        reduction: hidden width is ``channels // reduction`` (at least 1).

    State dict keys: ``layer1`` (Linear C -> C/r), ``layer2`` (Linear C/r -> C). Input/output (B, C, *spatial).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.layer1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.layer2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, *spatial) -> (B, C, *spatial)."""
        pooled = x.flatten(2).mean(-1)  # (B, C)
        scale = torch.sigmoid(self.layer2(self.relu(self.layer1(pooled))))
        return x * scale.reshape(*scale.shape, *([1] * (x.dim() - 2)))
