"""The "Taming Mambas" voxel-level U-Nets (Lumetti et al., arXiv 2410.15496): SegMamba, BiSegMamba,
MultiSegMamba and SegMambaSkip, on MONAI's DynUNet building blocks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import UnetBasicBlock, UnetOutBlock, UnetResBlock, UnetUpBlock

from nnmamba_monai.blocks.checked_conv import use_checked_convs
from nnmamba_monai.blocks.voxel_mamba import BiVoxelMambaLayer, MultiVoxelMambaLayer, VoxelMambaLayer

__all__ = ["BiSegMamba", "MultiSegMamba", "SegMamba", "SegMambaSkip"]


def _per_axis(stride: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    if isinstance(stride, int):
        return (stride,) * spatial_dims
    stride = tuple(int(s) for s in stride)
    if len(stride) != spatial_dims:
        raise ValueError(f"a stride must be an int or have {spatial_dims} entries; got {stride}")
    return stride


class _VoxelMambaUNet(nn.Module):
    """Shared U-Net: residual conv encoder with a voxel Mamba layer per level, DynUNet-style decoder.

    Subclasses choose the layer (``layer_cls``) and whether its output also feeds the next encoder stage
    (``mamba_on_path``) or only the skip connection.
    """

    layer_cls: type[nn.Module] = VoxelMambaLayer
    mamba_on_path: bool = True
    supported_spatial_dims: tuple[int, ...] = (2, 3)

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        filters: Sequence[int] = (32, 64, 128, 256, 320),
        strides: Sequence[int | Sequence[int]] = (1, 2, 2, 2, 2),
        kernel_size: int = 3,
        blocks_per_stage: int | Sequence[int] = 1,
        norm_name: str | tuple = ("INSTANCE", {"affine": True}),
        act_name: str | tuple = ("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        res_block: bool = True,
        d_state: int | None = None,
        deep_supervision: bool = False,
        deep_supr_num: int = 1,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if spatial_dims not in self.supported_spatial_dims:
            raise ValueError(f"{name}: spatial_dims must be one of {self.supported_spatial_dims}; got {spatial_dims}")
        if in_channels < 1 or out_channels < 1 or any(f < 1 for f in filters):
            raise ValueError(
                f"{name}: in_channels, out_channels and filters must be positive; "
                f"got {in_channels}, {out_channels}, {tuple(filters)}"
            )
        levels = len(filters)
        if levels < 2 or len(strides) != levels:
            raise ValueError(
                f"{name}: filters and strides need one entry per level (at least 2 levels); "
                f"got filters {tuple(filters)}, strides {tuple(strides)}"
            )
        blocks = [blocks_per_stage] * levels if isinstance(blocks_per_stage, int) else list(blocks_per_stage)
        if len(blocks) != levels or any(b < 1 for b in blocks):
            raise ValueError(f"{name}: blocks_per_stage must be >= 1 per level; got {blocks_per_stage}")
        if deep_supervision and not 1 <= deep_supr_num <= levels - 2:
            raise ValueError(
                f"{name}: deep_supr_num must be in [1, {levels - 2}] for {levels} levels; got {deep_supr_num}"
            )
        self.spatial_dims = spatial_dims
        self.strides = tuple(_per_axis(s, spatial_dims) for s in strides)
        self.divisors = tuple(math.prod(s[axis] for s in self.strides) for axis in range(spatial_dims))
        self.deep_supervision = deep_supervision
        self.deep_supr_num = deep_supr_num

        conv_block = UnetResBlock if res_block else UnetBasicBlock
        stages = []
        for level, (width, n_blocks) in enumerate(zip(filters, blocks)):
            width_in = in_channels if level == 0 else filters[level - 1]
            stage = [conv_block(spatial_dims, width_in, width, kernel_size, self.strides[level], norm_name, act_name)]
            stage += [
                conv_block(spatial_dims, width, width, kernel_size, 1, norm_name, act_name) for _ in range(n_blocks - 1)
            ]
            stages.append(nn.Sequential(*stage))
        self.encoder = nn.ModuleList(stages)
        self.mamba_layers = nn.ModuleList(self._make_layer(width, d_state, backend) for width in filters)
        # up_blocks[level] brings level + 1 up to level and merges that level's skip
        self.up_blocks = nn.ModuleList(
            UnetUpBlock(
                spatial_dims,
                filters[level + 1],
                filters[level],
                kernel_size,
                stride=1,
                upsample_kernel_size=self.strides[level + 1],
                norm_name=norm_name,
                act_name=act_name,
            )
            for level in range(levels - 1)
        )
        self.output_block = UnetOutBlock(spatial_dims, filters[0], out_channels)
        self.deep_supervision_heads = nn.ModuleList(
            UnetOutBlock(spatial_dims, filters[level], out_channels)
            for level in range(1, deep_supr_num + 1 if deep_supervision else 1)
        )
        use_checked_convs(self)  # reduced-precision CPU gradients checked (blocks/checked_conv.py)

    def _make_layer(self, channels: int, d_state: int | None, backend: str) -> nn.Module:
        return self.layer_cls(channels, d_state=d_state, backend=backend)

    def _check_input(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing():  # a trace records tensor ops only: the check ran on the eager network
            return
        name = type(self).__name__
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"{name} expects (batch, channels, {'H, W, D' if self.spatial_dims == 3 else 'H, W'}); "
                f"got shape {tuple(x.shape)}"
            )
        spatial = tuple(x.shape[2:])
        if any(s % k for s, k in zip(spatial, self.divisors)):
            valid = tuple(-(-s // k) * k for s, k in zip(spatial, self.divisors))
            raise ValueError(
                f"{name} needs spatial sizes that are multiples of {self.divisors} (the product of the strides "
                f"{self.strides} per axis); got {spatial}. Use sizes such as {valid} (e.g. MONAI "
                f"DivisiblePadd(k={self.divisors}) or a sliding-window roi_size of such multiples)."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """x: (B, in_channels, H, W, D) -> (B, out_channels, H, W, D).

        With deep supervision in training mode: a list [full, 1/s1, ...] of logits at the decoder levels'
        own resolutions (full resolution first), as nnMambaSeg returns it.
        """
        self._check_input(x)
        skips = []
        for stage, layer in zip(self.encoder, self.mamba_layers):
            x = stage(x)
            mixed = layer(x)
            skips.append(mixed)
            if self.mamba_on_path:
                x = mixed
        x = skips[-1]
        decoded = []
        for level in reversed(range(len(self.up_blocks))):
            x = self.up_blocks[level](x, skips[level])
            decoded.append(x)
        decoded.reverse()  # decoded[level] has the resolution of encoder level ``level``
        out = self.output_block(decoded[0])
        if self.deep_supervision and self.training:
            return [out] + [head(decoded[level + 1]) for level, head in enumerate(self.deep_supervision_heads)]
        return out


_ARGS_DOC = """
    Args:
        spatial_dims: 3 (2 also works for all but MultiSegMamba).
        in_channels: input channels (MR sequences, CT = 1).
        out_channels: classes or regions.
        filters: channels per level, full resolution first.
        strides: stride of each level's first convolution (int or one per axis); the first is usually 1.
            Every spatial size must be a multiple of the strides' product per axis (16 with the defaults).
        kernel_size: convolution kernel size.
        blocks_per_stage: residual blocks per encoder level (int or one per level).
        norm_name, act_name: MONAI norm and activation names (instance norm + leaky ReLU as in nnU-Net).
        res_block: residual (``UnetResBlock``) or plain (``UnetBasicBlock``) encoder blocks.
        d_state: Mamba state size for every level; None = min(C, {cap}) per level as in the paper.
        deep_supervision: add 1x1 heads on decoder levels 1..deep_supr_num; in training mode the output is
            then a list [full, 1/2, ...] at the levels' own resolutions, in eval mode the full-resolution tensor.
        deep_supr_num: number of extra heads (1 .. levels - 2).
        backend: selective-scan backend ("auto", "torch", "triton", "mamba_ssm").

    Input (B, in_channels, H, W, D); output (B, out_channels, H, W, D). Voxels are flattened in row-major
    (H, W, D) order, D fastest. All arguments are plain JSON values, so a MONAI bundle can swap the family by
    overriding ``network_def#_target_`` (see docs/taming_mambas.md).
"""


class SegMamba(_VoxelMambaUNet):
    """Voxel-level unidirectional Mamba U-Net.

    Encoder: per level a strided residual conv stage, then a :class:`VoxelMambaLayer` (one forward scan of
    the voxels in (H, W, D) order) whose output is both the skip and the next level's input, from full
    resolution down to the bottleneck. Decoder: MONAI ``UnetUpBlock`` (transposed conv, concat skip, two
    convs) per level and a 1x1 ``UnetOutBlock``.
    """

    __doc__ = (__doc__ or "") + _ARGS_DOC.replace("{cap}", "64")
    layer_cls = VoxelMambaLayer


class BiSegMamba(_VoxelMambaUNet):
    """Voxel-level bidirectional Mamba U-Net.

    As :class:`SegMamba`, with a :class:`BiVoxelMambaLayer` per level: forward scan of the (H, W, D)
    row-major voxel sequence plus a separately weighted scan of the reversed sequence, summed, LayerNorm.
    """

    __doc__ = (__doc__ or "") + _ARGS_DOC.replace("{cap}", "256")
    layer_cls = BiVoxelMambaLayer


class MultiSegMamba(_VoxelMambaUNet):
    """Voxel-level multi-directional Mamba U-Net (3D only).

    As :class:`SegMamba`, with a :class:`MultiVoxelMambaLayer` per level: bidirectional scans over the axis
    orders (H, W, D), (H, D, W), (W, H, D) and (D, H, W) (slowest axis first), each with its own weights
    (8 Mamba blocks per level), permuted back and averaged per voxel.
    """

    __doc__ = (__doc__ or "") + _ARGS_DOC.replace("{cap}", "64")
    layer_cls = MultiVoxelMambaLayer
    supported_spatial_dims = (3,)  # scans orders of three spatial axes


class SegMambaSkip(_VoxelMambaUNet):
    """U-Net with Mamba only on the skip connections.

    The encoder is a convolutional path without Mamba (residual blocks by default, as in the paper's code;
    ``res_block=False`` for plain double convolutions). Each level's features, bottleneck included, pass
    through a :class:`BiVoxelMambaLayer` (bidirectional, (H, W, D) row-major) before reaching the decoder;
    the next encoder level reads the un-mixed features.
    """

    __doc__ = (__doc__ or "") + _ARGS_DOC.replace("{cap}", "256")
    layer_cls = BiVoxelMambaLayer
    mamba_on_path = False
