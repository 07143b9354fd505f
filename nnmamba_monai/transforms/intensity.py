"""Contrast augmentation MONAI lacks: inverting the foreground intensities so that T2/PD-like contrast appears.

MONAI's intensity transforms (gamma, bias field, histogram shift) keep the order of intensities, or (a plain
inversion) make the air bright too. A T2 or PD scan reverses T1's order of tissues but keeps air dark; the
transforms here do that. Training-time augmentation for contrast-agnostic models (brain extraction, landmarks),
not a model of MR physics; :func:`inverted_head_contrast` makes a synthetic test volume the same way.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils.type_conversion import convert_to_tensor
from scipy import ndimage

__all__ = ["IntensityInversion", "RandIntensityInversion", "RandIntensityInversiond", "inverted_head_contrast"]


class IntensityInversion(Transform):
    """Mirror the foreground intensities within their range; leave the background as it is.

    Voxels above ``threshold = min + background_fraction * (max - min)`` (the foreground) map as
    ``v -> max + threshold - v``, so the brightest foreground voxel becomes the darkest foreground value and the
    reverse; voxels at or below the threshold keep their value. On a T1-weighted head MRI scaled to [0, 1] this makes
    cerebrospinal fluid bright and white matter darker than grey matter while the air stays dark: a T2-like contrast
    (a plain inversion, ``max - v``, would also make the air bright, which T2 images are not). Min and max are per
    channel.

    Args:
        background_fraction: the threshold's position between the image's minimum (0) and maximum (1).
    """

    def __init__(self, background_fraction: float = 0.05) -> None:
        self.background_fraction = checked_background_fraction(background_fraction)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """img: (C, *spatial); returns the same type and shape (a MetaTensor keeps its metadata)."""
        image = convert_to_tensor(img, track_meta=True)
        threshold, high = foreground_threshold(image, self.background_fraction)
        return torch.where(image > threshold, high + threshold - image, image)


def checked_background_fraction(background_fraction: float) -> float:
    """``background_fraction`` when it is in [0, 1), else a ``ValueError`` naming it."""
    if not 0.0 <= background_fraction < 1.0:
        raise ValueError(f"background_fraction must be in [0, 1); got {background_fraction}")
    return background_fraction


def foreground_threshold(image: torch.Tensor, background_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel of ``image`` (C, *spatial): the foreground threshold ``min + background_fraction * (max - min)``
    and the maximum, each shaped (C, 1, ..., 1) to broadcast over the image."""
    flat = image.reshape(image.shape[0], -1)
    low, high = flat.amin(1), flat.amax(1)
    shape = (-1,) + (1,) * (image.dim() - 1)
    return (low + background_fraction * (high - low)).view(shape), high.view(shape)


class RandIntensityInversion(RandomizableTransform):
    """:class:`IntensityInversion` with probability ``prob``."""

    def __init__(self, prob: float = 0.1, background_fraction: float = 0.05) -> None:
        RandomizableTransform.__init__(self, prob)
        self.inversion = IntensityInversion(background_fraction)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize(None)
        return self.inversion(img) if self._do_transform else img


class RandIntensityInversiond(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandIntensityInversion`: one draw per call, applied to every key.

    Args:
        keys: image keys (e.g. "image").
        prob: probability of inverting.
        background_fraction: see :class:`IntensityInversion`.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        background_fraction: float = 0.05,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.inversion = IntensityInversion(background_fraction)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if self._do_transform:
            for key in self.key_iterator(d):
                d[key] = self.inversion(d[key])
        return d


def inverted_head_contrast(image: np.ndarray, head_fraction: float = 0.05) -> np.ndarray:
    """A synthetic T2/PD-like test volume from a raw (H, W, D) T1 volume, in the T1's intensity units.

    The head is the filled, closed region above ``head_fraction`` of the 99th percentile; inside it the
    intensities (clipped at that percentile) are reversed, outside it they become 0. Float32, same shape.
    """
    top = float(np.percentile(image, 99.0))
    head = ndimage.binary_fill_holes(ndimage.binary_closing(image > head_fraction * top, iterations=3))
    inverted = top - np.clip(image, 0, top) + head_fraction * top
    return np.where(head, inverted, 0.0).astype(np.float32)
