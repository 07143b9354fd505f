"""Foreground intensity inversion (T2-like contrast from T1): values, background kept, metadata, randomness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from nnmamba_monai.transforms import IntensityInversion, RandIntensityInversion, RandIntensityInversiond


def test_foreground_is_mirrored_within_its_range_and_background_kept():
    image = torch.tensor([[0.0, 0.04, 0.2, 0.5, 1.0]])
    out = IntensityInversion(background_fraction=0.1)(image)  # threshold 0.1
    np.testing.assert_allclose(out.numpy(), [[0.0, 0.04, 0.9, 0.6, 0.1]], atol=1e-6)
    # T1-like order (air < CSF < grey < white) becomes T2-like (air < white < grey < CSF)
    air, csf, grey, white = IntensityInversion(0.05)(torch.tensor([[0.01, 0.25, 0.6, 0.85]]))[0]
    assert air < white < grey < csf


def test_thresholds_are_per_channel_and_metadata_is_kept():
    image = MetaTensor(torch.stack([torch.linspace(0, 1, 8), torch.linspace(0, 10, 8)])[:, :, None, None],
                       affine=torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0])))  # fmt: skip
    out = IntensityInversion(0.0)(image)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, image.affine) and out.shape == image.shape
    # above the minimum, v -> max + min - v per channel; the minimum itself is background
    np.testing.assert_allclose(out[0, 1:, 0, 0].numpy(), (1 - image[0, 1:, 0, 0]).numpy(), atol=1e-6)
    np.testing.assert_allclose(out[1, 1:, 0, 0].numpy(), (10 - image[1, 1:, 0, 0]).numpy(), atol=1e-5)


def test_random_versions_apply_with_their_probability_to_every_key():
    image = torch.rand(1, 4, 4, 4)
    assert torch.equal(RandIntensityInversion(prob=0.0)(image), image)
    assert torch.allclose(RandIntensityInversion(prob=1.0)(image), IntensityInversion()(image))
    transform = RandIntensityInversiond(keys=["a", "b"], prob=0.5)
    transform.set_random_state(seed=0)
    inverted = []
    for _ in range(40):
        out = transform({"a": image, "b": image.clone()})
        assert torch.equal(out["a"], out["b"])  # one draw for both keys
        inverted.append(not torch.equal(out["a"], image))
    assert 10 < sum(inverted) < 30


def test_invalid_background_fraction_is_refused():
    with pytest.raises(ValueError, match="background_fraction must be in"):
        IntensityInversion(1.0)
