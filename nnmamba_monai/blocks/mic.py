"""nnMamba's SSM-in-convolution layers: MIC and MICCSS (Mamba-In-Convolution with Channel-Spatial Siamese input).

Both take a feature map (B, C, H, W, D), flatten it to a voxel sequence (B, L, C) with L = H*W*D in
row-major (H, W, D) order (D fastest; :mod:`~nnmamba_monai.blocks.voxel_sequence`), run a
:class:`~nnmamba_monai.ssm.Mamba` over it and reshape back.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Norm

from nnmamba_monai.blocks.voxel_sequence import on_voxel_sequence
from nnmamba_monai.ssm import Mamba

__all__ = ["MICLayer", "MICCSSLayer"]


def _conv1x1(spatial_dims: int, channels: int) -> nn.Module:
    return Conv[Conv.CONV, spatial_dims](channels, channels, kernel_size=1, bias=False)


class MICLayer(nn.Module):
    """MIC, the nnU-Net-trainer generation: ReLU(BN(conv1x1(x))) -> one Mamba pass -> reshape back.

    Args:
        spatial_dims: 2 or 3.
        channels: C, input = output channels.
        d_state, d_conv, expand: Mamba settings.
        backend: selective-scan backend.

    State dict keys: ``nin``, ``norm``, ``mamba``. Input/output (B, C, *spatial).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.nin = _conv1x1(spatial_dims, channels)
        self.norm = Norm[Norm.BATCH, spatial_dims](channels)
        self.relu = nn.ReLU(inplace=True)
        self.mamba = Mamba(d_model=channels, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, *spatial) -> (B, C, *spatial)."""
        return on_voxel_sequence(self.mamba, self.relu(self.norm(self.nin(x))))


class MICCSSLayer(nn.Module):
    """MICCSS: MIC with the channel-spatial siamese input and a residual, as in the published nnMamba.

    a = ReLU(BN(conv1x1(x))); s = a as a (B, L, C) sequence. With ``cross_scan`` the ONE Mamba sees four
    versions of s: as is, reversed along L, reversed along C, reversed along both; each output is flipped
    back the same way and the four are averaged. Without ``cross_scan`` (the classification stem) it sees s
    once. Then out = ReLU(BN(conv1x1(mamba_out + a))).

    The four versions run as one batched call (batch 4B), not four: same result, one scan launch.

    Args:
        spatial_dims: 2 or 3.
        channels: C, input = output channels.
        d_state, d_conv, expand: Mamba settings.
        cross_scan: the four flipped versions (True) or a single pass (False).
        backend: selective-scan backend.

    State dict keys, in the authors' order: ``nin``, ``nin2``, ``norm2``, ``norm``, ``mamba``.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        cross_scan: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.cross_scan = cross_scan
        self.nin = _conv1x1(spatial_dims, channels)
        self.nin2 = _conv1x1(spatial_dims, channels)
        self.norm2 = Norm[Norm.BATCH, spatial_dims](channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.norm = Norm[Norm.BATCH, spatial_dims](channels)
        self.relu = nn.ReLU(inplace=True)
        self.mamba = Mamba(d_model=channels, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)

    def _siamese_scan(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, L, C): mean over the four flips of the shared Mamba's output."""
        flips = ((), (1,), (2,), (1, 2))
        stacked = torch.cat([seq.flip(dims) if dims else seq for dims in flips], dim=0)
        outs = self.mamba(stacked).chunk(len(flips), dim=0)
        restored = [out.flip(dims) if dims else out for out, dims in zip(outs, flips)]
        return torch.stack(restored, dim=0).mean(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, *spatial) -> (B, C, *spatial)."""
        a = self.relu(self.norm(self.nin(x)))
        mixed = on_voxel_sequence(self._siamese_scan if self.cross_scan else self.mamba, a)
        return self.relu2(self.norm2(self.nin2(mixed + a)))
