"""Intensity scaling whose range is read from the head only, so that the field of view does not change it.

MONAI's ``ScaleIntensityRangePercentilesd`` reads its percentiles from every voxel. On a head MRI the share of
air depends on the field of view: the same head inside a larger box (a scan that reaches the neck, zero padding,
another scanner's field of view) has a lower 95th percentile and comes out brighter. Here the percentiles are
read from the foreground voxels alone (above ``min + background_fraction * (max - min)``, per channel, the
threshold of :class:`~nnmamba_monai.transforms.IntensityInversion`), so air, padding and their amount do not
count.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.transforms.utils_pytorch_numpy_unification import percentile
from monai.utils.type_conversion import convert_to_dst_type, convert_to_tensor

from nnmamba_monai.transforms.intensity import checked_background_fraction, foreground_threshold

__all__ = ["ForegroundPercentileScale", "ForegroundPercentileScaled"]


class ForegroundPercentileScale(Transform):
    """Scale each channel linearly so that its foreground's ``lower`` and ``upper`` percentiles become ``b_min``
    and ``b_max``; with ``clip``, values outside [b_min, b_max] are clipped (air goes to ``b_min``).

    Args:
        lower: percentile (0-100) of the foreground intensities that maps to ``b_min``.
        upper: percentile (0-100) of the foreground intensities that maps to ``b_max``; above ``lower``.
        b_min: output value of the lower percentile.
        b_max: output value of the upper percentile.
        clip: clip the output to [b_min, b_max].
        background_fraction: voxels at or below ``min + background_fraction * (max - min)`` are background and
            are not read; in [0, 1).
    """

    def __init__(
        self,
        lower: float,
        upper: float,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        background_fraction: float = 0.05,
    ) -> None:
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"need 0 <= lower < upper <= 100 (percentiles); got lower={lower}, upper={upper}")
        self.lower, self.upper = float(lower), float(upper)
        self.b_min, self.b_max, self.clip = float(b_min), float(b_max), clip
        self.background_fraction = checked_background_fraction(background_fraction)

    def foreground_range(self, image: torch.Tensor) -> torch.Tensor:
        """(C, 2): the lower and upper percentile of each channel's foreground voxels of ``image`` (C, *spatial).

        A channel without foreground (a constant channel) gives its constant twice."""
        threshold, _ = foreground_threshold(image, self.background_fraction)
        ranges = []
        for channel, channel_threshold in zip(image, threshold.flatten()):
            values = channel[channel > channel_threshold]
            if values.numel() == 0:
                values = channel.reshape(-1)[:1]
            ranges.append([float(percentile(values, self.lower)), float(percentile(values, self.upper))])
        return torch.tensor(ranges, dtype=torch.float64)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """img: (C, *spatial); returns float32 of the same type and shape (a MetaTensor keeps its metadata)."""
        image = convert_to_tensor(img, track_meta=True, dtype=torch.float32)
        ranges = self.foreground_range(image)
        shape = (-1,) + (1,) * (image.dim() - 1)
        low, high = ranges[:, 0].view(shape).float(), ranges[:, 1].view(shape).float()
        width = high - low
        if bool((width <= 0).any()):
            warnings.warn("a channel has one foreground intensity: it is shifted, not scaled", stacklevel=2)
            width = torch.where(width > 0, width, torch.ones_like(width))
        scaled = (image - low) / width * (self.b_max - self.b_min) + self.b_min
        if self.clip:
            scaled = scaled.clamp(self.b_min, self.b_max)
        return convert_to_dst_type(scaled, img, dtype=torch.float32)[0]


class ForegroundPercentileScaled(MapTransform):
    """Dictionary version of :class:`ForegroundPercentileScale`, one scaling per key (each from its own image).

    ``scale_options``: ``b_min``, ``b_max``, ``clip`` and ``background_fraction`` of
    :class:`ForegroundPercentileScale`.
    """

    def __init__(
        self, keys: KeysCollection, lower: float, upper: float, allow_missing_keys: bool = False, **scale_options: Any
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ForegroundPercentileScale(lower, upper, **scale_options)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d
