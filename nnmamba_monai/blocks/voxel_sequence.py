"""A feature map read as a sequence of voxel tokens: the one place that flattens voxels and puts them back.

Every SSM layer here (nnMamba's MIC/MICCSS, the Taming-Mambas voxel layers) reads a (B, C, H, W, D) feature
map as B sequences of L = H*W*D tokens of width C, in row-major order of the spatial axes (the last axis, D,
fastest), and reshapes the result back.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["on_voxel_sequence", "to_sequence", "to_volume"]


def to_sequence(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *spatial) -> (B, L, C), L = prod(spatial) in row-major order (last spatial axis fastest)."""
    return x.flatten(2).transpose(1, 2)


def to_volume(seq: torch.Tensor, spatial: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """(B, L, C) -> (B, C, *spatial), inverse of :func:`to_sequence`."""
    return seq.transpose(1, 2).reshape(seq.shape[0], seq.shape[2], *spatial)


def on_voxel_sequence(sequence_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply ``sequence_fn`` ((B, L, C) -> (B, L, C')) to the voxels of x (B, C, *spatial): (B, C', *spatial)."""
    return to_volume(sequence_fn(to_sequence(x)), x.shape[2:])
