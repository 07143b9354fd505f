"""A random, generally non-monotonic intensity curve over the foreground: contrasts no monotonic transform reaches.

MONAI's gamma, histogram shift and bias field keep the order of intensities; its ``RandIntensityRemap`` builds its
curve over every distinct value of the image, which on a float volume is close to a random value per voxel. Another
MR contrast reorders tissues in ways no single flip describes (a T2 makes fluid the brightest, white matter darker
than grey matter and fat mid-grey), so a model meant to hold on contrasts it was not trained on sees random curves
here: a few control points with random levels, linear in between, applied above a background threshold so the air
stays dark. Training-time augmentation, not a model of MR physics.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.networks.layers import GaussianFilter
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils.type_conversion import convert_to_tensor

from nnmamba_monai.transforms.intensity import checked_background_fraction, foreground_threshold

__all__ = ["IntensityCurve", "RandIntensityCurve", "RandIntensityCurved", "RandRegionIntensityCurved"]


class IntensityCurve(Transform):
    """Map the foreground intensities through a piecewise-linear curve; leave the background as it is.

    Per channel, ``threshold = min + background_fraction * (max - min)``; a voxel above it at relative position
    ``u = (v - threshold) / (max - threshold)`` in (0, 1] becomes ``threshold + curve(u) * (max - threshold)``,
    where ``curve`` passes through ``levels`` at evenly spaced ``u`` (the first level at u = 0, the last at
    u = 1) and is linear in between. Voxels at or below the threshold keep their value. ``levels`` (0, 1) is the
    identity; (1, 0) is :class:`~nnmamba_monai.transforms.IntensityInversion`; (0, 1, 0.5, 0.4) on a T1 scaled to
    [0, 1] (fluid 0.35, grey matter 0.6, white matter 0.85) gives a T2-like order: fluid brightest, white matter
    below grey matter.

    Args:
        levels: the curve's values at its control points, each in [0, 1]; at least two.
        background_fraction: the threshold's position between the image's minimum (0) and maximum (1).
    """

    def __init__(self, levels: Sequence[float], background_fraction: float = 0.05) -> None:
        levels = [float(v) for v in levels]
        if len(levels) < 2 or not all(0.0 <= v <= 1.0 for v in levels):
            raise ValueError(f"levels must be at least two values in [0, 1]; got {levels}")
        self.levels = levels
        self.background_fraction = checked_background_fraction(background_fraction)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """img: (C, *spatial); returns a floating-point tensor of the same shape (a MetaTensor keeps its metadata)."""
        image = convert_to_tensor(img, track_meta=True)
        image = image if image.is_floating_point() else image.float()
        threshold, high = foreground_threshold(image, self.background_fraction)
        span = (high - threshold).clamp_min(torch.finfo(image.dtype).tiny)
        levels = torch.as_tensor(self.levels, dtype=image.dtype, device=image.device)
        # position on the curve in units of control-point intervals: segment index and fraction within it
        position = ((image - threshold) / span).clamp(0.0, 1.0) * (len(self.levels) - 1)
        index = position.floor().long().clamp(max=len(self.levels) - 2)
        fraction = position - index
        curve = levels[index] * (1 - fraction) + levels[index + 1] * fraction
        return torch.where(image > threshold, threshold + curve * span, image)


class RandIntensityCurve(RandomizableTransform):
    """:class:`IntensityCurve` with probability ``prob`` and random levels.

    Each draw picks the number of control points uniformly in ``num_control_points`` (inclusive) and each level
    uniformly in [0, 1], so the curve is usually not monotonic.

    Args:
        prob: probability of applying a curve.
        num_control_points: (min, max) number of control points, min >= 2.
        background_fraction: see :class:`IntensityCurve`.
    """

    def __init__(
        self, prob: float = 0.1, num_control_points: Sequence[int] = (3, 6), background_fraction: float = 0.05
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        low, high = (int(n) for n in num_control_points)
        if not 2 <= low <= high:
            raise ValueError(f"num_control_points must be (min, max) with 2 <= min <= max; got {num_control_points}")
        self.num_control_points = (low, high)
        self.background_fraction = checked_background_fraction(background_fraction)
        self.levels: list[float] = [0.0, 1.0]

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            count = self.R.randint(self.num_control_points[0], self.num_control_points[1] + 1)
            self.levels = self.R.uniform(0.0, 1.0, count).tolist()

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """img: (C, *spatial); unchanged when not drawn."""
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        return IntensityCurve(self.levels, self.background_fraction)(img)


class RandIntensityCurved(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandIntensityCurve`: one draw per call, the same curve for every key.

    Args:
        keys: image keys (e.g. "image").
        prob, num_control_points, background_fraction: see :class:`RandIntensityCurve`.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        num_control_points: Sequence[int] = (3, 6),
        background_fraction: float = 0.05,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)  # the inner transform draws with ``prob``
        self.curve = RandIntensityCurve(prob, num_control_points, background_fraction)

    def set_random_state(self, seed: int | None = None, state: Any = None) -> RandIntensityCurved:
        super().set_random_state(seed, state)
        self.curve.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.curve.randomize()
        for key in self.key_iterator(d):
            d[key] = self.curve(d[key], randomize=False)
        return d


class RandRegionIntensityCurved(RandomizableTransform, MapTransform):
    """Two independent random intensity curves: one inside a mask (e.g. the brain label), one outside it.

    With probability ``prob``, the image's foreground is mapped through one :class:`IntensityCurve` where
    ``mask_key`` is non-zero and through another, drawn independently, elsewhere; the two are blended with the
    mask smoothed by a Gaussian of random ``sigma`` (voxels), so the seam is as soft as a partial-volume edge and
    the label's exact border leaves no step in the image. Air (at or below the background threshold) keeps its
    value. One intensity no longer tells brain from non-brain tissue (a T1's bright scalp fat and bright white
    matter get unrelated values), the cue a synthetic-contrast model (SynthStrip's label-map images) removes:
    the network has to find the brain by its shape and surroundings. Training-time augmentation.

    Args:
        keys: image keys (e.g. "image"); every key gets the same two curves.
        mask_key: the mask (e.g. "label"), non-zero inside: (1, *spatial) or one channel per image channel, the
            images' spatial shape.
        prob: probability of applying the curves.
        num_control_points: (min, max) control points of each curve; see :class:`RandIntensityCurve`.
        sigma: (min, max) standard deviation, in voxels, of the Gaussian that softens the mask's border.
        background_fraction: see :class:`IntensityCurve`.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str = "label",
        prob: float = 0.1,
        num_control_points: Sequence[int] = (3, 6),
        sigma: Sequence[float] = (0.5, 1.5),
        background_fraction: float = 0.05,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.mask_key = mask_key
        self.inside = RandIntensityCurve(1.0, num_control_points, background_fraction)
        self.outside = RandIntensityCurve(1.0, num_control_points, background_fraction)
        low, high = (float(s) for s in sigma)
        if not 0.0 <= low <= high:
            raise ValueError(f"sigma must be (min, max) with 0 <= min <= max; got {sigma}")
        self.sigma_range = (low, high)
        self.sigma = low
        self._share_random_state()

    def set_random_state(self, seed: int | None = None, state: Any = None) -> RandRegionIntensityCurved:
        super().set_random_state(seed, state)
        self._share_random_state()
        return self

    def _share_random_state(self) -> None:
        """The two curves draw from this transform's generator, so one seed fixes all three draws."""
        self.inside.set_random_state(state=self.R)
        self.outside.set_random_state(state=self.R)

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.inside.randomize()
            self.outside.randomize()
            self.sigma = self.R.uniform(*self.sigma_range)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        if self.mask_key not in d:
            raise KeyError(f"RandRegionIntensityCurved: mask key '{self.mask_key}' is not in the data ({list(d)})")
        mask = convert_to_tensor(d[self.mask_key], track_meta=False)
        weight = _smoothed(mask > 0, self.sigma)
        for key in self.key_iterator(d):
            image = d[key]
            if tuple(image.shape[1:]) != tuple(weight.shape[1:]) or weight.shape[0] not in (1, image.shape[0]):
                raise ValueError(
                    f"RandRegionIntensityCurved: '{key}' has shape {tuple(image.shape)} (channels first) but the "
                    f"mask '{self.mask_key}' has {tuple(weight.shape)}: it needs the same spatial shape and one "
                    "channel (or one per image channel)"
                )
            inside = self.inside(image, randomize=False)
            outside = self.outside(image, randomize=False)
            w = weight.to(device=inside.device, dtype=inside.dtype)
            d[key] = inside * w + outside * (1 - w)
        return d


def _smoothed(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """``mask`` (C, *spatial), boolean, as float in [0, 1] smoothed by a Gaussian of ``sigma`` voxels per axis."""
    weight = mask.float()
    if sigma <= 0:
        return weight
    smooth = GaussianFilter(spatial_dims=weight.dim() - 1, sigma=sigma)
    return smooth(weight.unsqueeze(0)).squeeze(0).clamp(0.0, 1.0)
