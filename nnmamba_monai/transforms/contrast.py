"""Random contrast inversion inside the head: T1-like images become T2/PD-like (CSF bright, white matter dark).

MONAI's intensity transforms (gamma, bias field, histogram shift, ``RandIntensityRemap``) keep the order of
intensities, or remap the background too. A T2 or PD scan reverses T1's order of tissues but keeps air dark;
this transform does that to an image scaled to [0, 1]: voxels above ``threshold`` (the head) get
``1 + threshold - x``, the rest (air) is left as it is. A training-time augmentation for contrast-agnostic
brain extraction, not a model of MR physics.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage

__all__ = ["invert_foreground", "inverted_head_contrast", "RandContrastInversiond"]


def invert_foreground(image: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """(C, H, W, D) image in [0, 1] -> the same shape, ``1 + threshold - x`` where ``x > threshold``, else ``x``.

    The inverted voxels stay above ``threshold`` (they land in (threshold, 1]); air stays where it was, so the
    head remains distinguishable from the background as it is in every MR contrast.
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1); got {threshold}")
    clipped = image.clamp(max=1.0)
    return torch.where(image > threshold, 1.0 + threshold - clipped, image)


def inverted_head_contrast(image: np.ndarray, head_fraction: float = 0.05) -> np.ndarray:
    """A synthetic T2/PD-like test volume from a raw (H, W, D) T1 volume, in the T1's intensity units.

    The head is the filled, closed region above ``head_fraction`` of the 99th percentile; inside it the
    intensities (clipped at that percentile) are reversed, outside it they become 0. Float32, same shape.
    """
    top = float(np.percentile(image, 99.0))
    head = ndimage.binary_fill_holes(ndimage.binary_closing(image > head_fraction * top, iterations=3))
    inverted = top - np.clip(image, 0, top) + head_fraction * top
    return np.where(head, inverted, 0.0).astype(np.float32)


class RandContrastInversiond(RandomizableTransform, MapTransform):
    """With probability ``prob``, :func:`invert_foreground` on each key (one draw per call, shared by the keys).

    Args:
        keys: image keys (scaled to [0, 1], e.g. by ``ScaleIntensityRangePercentilesd(..., clip=True)``).
        prob: probability of inverting.
        threshold: intensity at and below which a voxel counts as air and is left unchanged.
        allow_missing_keys: skip absent keys instead of raising.
    """

    def __init__(
        self, keys: KeysCollection, prob: float = 0.1, threshold: float = 0.05, allow_missing_keys: bool = False
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1); got {threshold}")
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = invert_foreground(torch.as_tensor(d[key]), self.threshold)
        return d
