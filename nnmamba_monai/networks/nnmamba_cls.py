"""nnMamba for image-level classification (Gong et al., ISBI 2025)."""

from __future__ import annotations

import torch
import torch.nn as nn

from nnmamba_monai.blocks import DoubleConv, MICCSSLayer, make_stage
from nnmamba_monai.blocks.checked_conv import use_checked_convs
from nnmamba_monai.ssm import Mamba

__all__ = ["nnMambaCls"]


class nnMambaCls(nn.Module):  # noqa: N801 - the published name
    """nnMamba encoder with a classification head.

    A stride-2 double convolution (C channels), a MIC stem c1 + SSM(c1) (one Mamba pass with residual),
    three stride-2 residual stages without SSM (2C, 4C, 8C), global average pooling of the three stage
    outputs, and an MLP (Linear -> ReLU -> Dropout -> Linear).

    Two heads:
      - ``hierarchical_ssm=False`` (the public nnMamba4cls.py layout; loads the authors' checkpoints):
        the pooled features are concatenated (14C) and fed to the MLP.
      - ``hierarchical_ssm=True`` (the paper's section 2.3, hierarchical sequential learning): each pooled
        level is projected to ``8C`` features, the three levels (coarse last) form a length-3 sequence
        that a Mamba layer reads, and the flattened sequence (3 x 8C) feeds the MLP.

    Args:
        spatial_dims: 3 (2 also works).
        in_channels: input channels.
        out_channels: logits (1 for a binary task with BCE, as published for NC vs AD).
        channels: C.
        blocks: residual blocks per stage.
        d_state: SSM state size (8 as published for classification).
        dropout: dropout in the MLP.
        hierarchical_ssm: see above.
        backend: selective-scan backend.

    Input (B, in_channels, *spatial), any spatial size >= 16; output (B, out_channels).
    12.88 M parameters with the defaults (public layout).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 32,
        blocks: int = 3,
        d_state: int = 8,
        dropout: float = 0.5,
        hierarchical_ssm: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3; got {spatial_dims}")
        if blocks < 1 or channels < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError(
                "in_channels, out_channels, channels and blocks must be positive; "
                f"got {in_channels}, {out_channels}, {channels}, {blocks}"
            )
        c = channels
        self.hierarchical_ssm = hierarchical_ssm
        self.in_conv = DoubleConv(spatial_dims, in_channels, c, stride=2)
        self.mamba_layer_stem = MICCSSLayer(spatial_dims, c, d_state=d_state, cross_scan=False, backend=backend)
        self.layer1 = make_stage(spatial_dims, c, 2 * c, blocks)
        self.layer2 = make_stage(spatial_dims, 2 * c, 4 * c, blocks)
        self.layer3 = make_stage(spatial_dims, 4 * c, 8 * c, blocks)
        if hierarchical_ssm:
            token = 8 * c
            self.level_proj = nn.ModuleList([nn.Linear(w, token) for w in (2 * c, 4 * c, 8 * c)])
            self.level_mamba = Mamba(d_model=token, d_state=d_state, backend=backend)
            head_in = 3 * token
        else:
            head_in = 14 * c
        self.mlp = nn.Sequential(
            nn.Linear(head_in, c), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(c, out_channels)
        )
        use_checked_convs(self)  # reduced-precision CPU gradients checked (blocks/checked_conv.py)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled stage features [(B, 2C), (B, 4C), (B, 8C)]."""
        if x.dim() < 4:
            raise ValueError(f"nnMambaCls expects (batch, channels, *spatial); got shape {tuple(x.shape)}")
        c1 = self.in_conv(x)
        c1 = c1 + self.mamba_layer_stem(c1)
        c2 = self.layer1(c1)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c.flatten(2).mean(-1) for c in (c2, c3, c4)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, *spatial) -> logits (B, out_channels)."""
        pooled = self.features(x)
        if self.hierarchical_ssm:
            tokens = torch.stack([proj(p) for proj, p in zip(self.level_proj, pooled)], dim=1)  # (B, 3, 8C)
            head_in = self.level_mamba(tokens).flatten(1)
        else:
            head_in = torch.cat(pooled, dim=1)
        return self.mlp(head_in)
