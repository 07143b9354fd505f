"""Intensity scaling read from the head only: the percentiles, clipping, independence of the field of view,
metadata and types, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRangePercentiles

from nnmamba_monai.transforms import ForegroundPercentileScale, ForegroundPercentileScaled


def _head(size: int = 24, seed: int = 0) -> torch.Tensor:
    """(1, size, size, size): a ball of tissue (intensities 20-120) in air (0-1)."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij"))
    inside = ((grid - (size - 1) / 2) ** 2).sum(0) < (size / 2.5) ** 2
    tissue = 20 + 100 * torch.rand(size, size, size, generator=generator)
    air = torch.rand(size, size, size, generator=generator)
    return torch.where(inside, tissue, air)[None]


def test_foreground_percentiles_map_to_b_min_and_b_max_and_air_is_clipped():
    image = _head()
    out = ForegroundPercentileScale(lower=1, upper=90)(image)
    tissue = image > 10
    low, high = np.percentile(image[tissue].numpy(), [1, 90])
    expected = np.clip((image.numpy() - low) / (high - low), 0, 1)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    assert float(out[~tissue].max()) == 0.0  # the air is below the lower percentile of the tissue
    assert out.dtype == torch.float32


def test_a_larger_field_of_view_does_not_change_the_head():
    image = _head()
    padded = torch.nn.functional.pad(image, (20, 4, 0, 30, 12, 12))  # the same head in a box 4x larger
    scaler = ForegroundPercentileScale(0.5, 92)
    head = scaler(image)
    np.testing.assert_allclose(scaler(padded)[:, 12:-12, :-30, 20:-4].numpy(), head.numpy(), atol=1e-6)
    # MONAI's whole-volume percentiles move with the amount of air: the head comes out brighter in the larger box
    whole = ScaleIntensityRangePercentiles(0.5, 92, 0.0, 1.0, clip=True)
    assert float(whole(padded)[:, 12:-12, :-30, 20:-4].mean()) > float(whole(image).mean()) + 0.05


def test_channels_are_scaled_separately_and_metadata_and_numpy_are_kept():
    image = torch.cat([_head(seed=1), 10 * _head(seed=2)])
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    out = ForegroundPercentileScaled("image", 5, 95)({"image": MetaTensor(image, affine=affine)})["image"]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine) and out.shape == image.shape
    for channel in out:  # each channel's own tissue spans [0, 1]
        assert float(channel.max()) == 1.0 and 0.4 < float(channel[channel > 0].mean()) < 0.6
    array = ForegroundPercentileScale(5, 95)(image.numpy())
    assert isinstance(array, np.ndarray) and array.dtype == np.float32
    np.testing.assert_allclose(array, out.numpy(), atol=1e-6)


def test_a_constant_channel_is_shifted_with_a_warning():
    with pytest.warns(UserWarning, match="one foreground intensity"):
        out = ForegroundPercentileScale(1, 99)(torch.full((1, 4, 4, 4), 7.0))
    assert torch.equal(out, torch.zeros(1, 4, 4, 4))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lower": 95, "upper": 5}, "lower=95"),
        ({"lower": 0, "upper": 101}, "upper=101"),
        ({"lower": 1, "upper": 99, "background_fraction": 1.0}, "background_fraction"),
    ],
)
def test_invalid_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ForegroundPercentileScale(**kwargs)
