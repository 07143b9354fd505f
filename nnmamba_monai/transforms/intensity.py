"""Contrast augmentation MONAI lacks: inverting the foreground intensities so that T2-like contrast appears."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils.type_conversion import convert_to_tensor

__all__ = ["IntensityInversion", "RandIntensityInversion", "RandIntensityInversiond"]


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
        if not 0.0 <= background_fraction < 1.0:
            raise ValueError(f"background_fraction must be in [0, 1); got {background_fraction}")
        self.background_fraction = background_fraction

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """img: (C, *spatial); returns the same type and shape (a MetaTensor keeps its metadata)."""
        image = convert_to_tensor(img, track_meta=True)
        flat = image.reshape(image.shape[0], -1)
        low, high = flat.amin(1), flat.amax(1)
        shape = (-1,) + (1,) * (image.dim() - 1)
        threshold = (low + self.background_fraction * (high - low)).view(shape)
        return torch.where(image > threshold, high.view(shape) + threshold - image, image)


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
