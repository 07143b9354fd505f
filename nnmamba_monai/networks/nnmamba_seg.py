"""nnMamba for dense prediction: segmentation and landmark heatmaps (Gong et al., ISBI 2025)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv

from nnmamba_monai.blocks import DoubleConv, MICCSSLayer, MICLayer, SkipScaling, make_stage
from nnmamba_monai.blocks.checked_conv import use_checked_convs

__all__ = ["nnMambaSeg", "DIVISOR"]

DIVISOR = 16  # four stride-2 steps: every spatial size must be a multiple of this
GENERATIONS = ("miccss", "mic")


class nnMambaSeg(nn.Module):  # noqa: N801 - the published name
    """nnMamba U-Net for segmentation and landmark heatmap regression.

    Encoder: a stride-2 double convolution (C channels, 1/2 resolution) and three stride-2 residual stages
    (2C, 4C, 8C; 1/4, 1/8, 1/16). Blocks 2..``blocks`` of each stage add an SSM layer on their input; one
    SSM module per stage is shared by those blocks, as in the published code. Skips are rescaled by
    squeeze-and-excitation (:class:`SkipScaling`). Decoder: x2 linear upsampling, concatenation with the
    skip, double convolution (12C->4C, 6C->2C, 3C->C), then x2 upsampling and a double convolution to
    ``out_channels``.

    Args:
        spatial_dims: 3 (2 also works, with bilinear upsampling).
        in_channels: input channels (MR sequences, CT = 1).
        out_channels: classes, regions or landmark heatmaps.
        channels: C, width of the first level.
        blocks: residual blocks per encoder stage (>= 1; SSM layers need >= 2).
        d_state: SSM state size.
        generation: "miccss" (nnMamba.py: MICCSS with the four-flip siamese input and residual) or
            "mic" (the authors' nnU-Net-trainer network: MIC, one pass, no flips).
        deep_supervision: add 1x1 heads on the decoder levels (C, 2C, 4C channels). In training mode the
            output is then a list [full, 1/2, 1/4, 1/8 resolution]; in eval mode the full-resolution tensor.
            None = as published for the generation (True for "mic", False for "miccss").
        out_relu: end with ReLU as published (the logits are then >= 0). Set False for sigmoid outputs or
            regression; the state dict is the same either way.
        pad_input: pad inputs whose spatial sizes are not multiples of 16 (replicate) and crop the output
            back, instead of raising ValueError.
        backend: selective-scan backend ("auto", "torch", "triton", "mamba_ssm").

    Input (B, in_channels, H, W, D); output (B, out_channels, H, W, D).
    Parameters with the defaults: 15.94 M for 6 classes, 15.96 M for 16 classes (as published).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        channels: int = 32,
        blocks: int = 3,
        d_state: int = 16,
        generation: str = "miccss",
        deep_supervision: bool | None = None,
        out_relu: bool = True,
        pad_input: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3; got {spatial_dims}")
        if generation not in GENERATIONS:
            raise ValueError(f"generation must be one of {GENERATIONS}; got {generation!r}")
        if blocks < 1 or channels < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError(
                "in_channels, out_channels, channels and blocks must be positive; "
                f"got {in_channels}, {out_channels}, {channels}, {blocks}"
            )
        self.spatial_dims = spatial_dims
        self.generation = generation
        self.deep_supervision = (generation == "mic") if deep_supervision is None else deep_supervision
        self.pad_input = pad_input
        self.upsample_mode = "trilinear" if spatial_dims == 3 else "bilinear"
        c = channels

        def ssm_layer(width: int) -> nn.Module | None:
            if blocks < 2:
                return None
            if generation == "mic":
                return MICLayer(spatial_dims, width, d_state=d_state, backend=backend)
            return MICCSSLayer(spatial_dims, width, d_state=d_state, cross_scan=True, backend=backend)

        self.in_conv = DoubleConv(spatial_dims, in_channels, c, stride=2)
        self.att1 = SkipScaling(c)
        self.layer1 = make_stage(spatial_dims, c, 2 * c, blocks, ssm_layer(2 * c))
        self.att2 = SkipScaling(2 * c)
        self.layer2 = make_stage(spatial_dims, 2 * c, 4 * c, blocks, ssm_layer(4 * c))
        self.att3 = SkipScaling(4 * c)
        self.layer3 = make_stage(spatial_dims, 4 * c, 8 * c, blocks, ssm_layer(8 * c))
        self.conv5 = DoubleConv(spatial_dims, 12 * c, 4 * c)
        self.conv6 = DoubleConv(spatial_dims, 6 * c, 2 * c)
        self.conv7 = DoubleConv(spatial_dims, 3 * c, c)
        self.conv8 = DoubleConv(spatial_dims, c, out_channels, final_act=out_relu)
        if self.deep_supervision:
            conv = Conv[Conv.CONV, spatial_dims]
            self.ds1_cls_conv = conv(c, out_channels, kernel_size=1)
            self.ds2_cls_conv = conv(2 * c, out_channels, kernel_size=1)
            self.ds3_cls_conv = conv(4 * c, out_channels, kernel_size=1)
        use_checked_convs(self)  # reduced-precision CPU gradients checked (blocks/checked_conv.py)

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode=self.upsample_mode, align_corners=False)

    def _check_or_pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"nnMambaSeg expects (batch, channels, {'H, W, D' if self.spatial_dims == 3 else 'H, W'}); "
                f"got shape {tuple(x.shape)}"
            )
        spatial = tuple(x.shape[2:])
        if torch.jit.is_tracing() and not self.pad_input:
            # a traced (exported) network records tensor ops only: the size check ran on the eager network
            return x, spatial
        if all(s % DIVISOR == 0 for s in spatial):
            return x, spatial
        if not self.pad_input:
            valid = tuple(-(-s // DIVISOR) * DIVISOR for s in spatial)
            raise ValueError(
                f"nnMambaSeg needs every spatial size to be a multiple of {DIVISOR} (four stride-2 steps); "
                f"got {spatial}. Use sizes such as {valid} (e.g. MONAI DivisiblePadd(k={DIVISOR}) or a "
                f"sliding-window roi_size of multiples of {DIVISOR}), or build the network with pad_input=True."
            )
        pad = []
        for s in reversed(spatial):
            pad += [0, -(-s // DIVISOR) * DIVISOR - s]
        return F.pad(x, pad, mode="replicate"), spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """x: (B, in_channels, *spatial) -> (B, out_channels, *spatial) (a list with deep supervision in training)."""
        x, spatial = self._check_or_pad(x)
        c1 = self.in_conv(x)
        c2 = self.layer1(c1)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.conv5(torch.cat([self._up(c4), self.att3(c3)], dim=1))
        c6 = self.conv6(torch.cat([self._up(c5), self.att2(c2)], dim=1))
        c7 = self.conv7(torch.cat([self._up(c6), self.att1(c1)], dim=1))
        out = self.conv8(self._up(c7))
        crop = tuple(slice(0, s) for s in spatial)
        out = out[(..., *crop)]
        if self.deep_supervision and self.training:
            return [out, self.ds1_cls_conv(c7), self.ds2_cls_conv(c6), self.ds3_cls_conv(c5)]
        return out
