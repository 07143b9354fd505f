"""Contrast inversion (T1 -> T2/PD-like augmentation) and the largest-component mask clean-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from nnmamba_monai.transforms import (
    LargestComponentd,
    RandContrastInversiond,
    invert_foreground,
    largest_component_filled,
)


def test_invert_foreground_reverses_tissue_order_and_keeps_air():
    image = torch.tensor([[[[0.0, 0.02, 0.2, 0.5, 0.9, 1.3]]]])  # air, air, CSF, GM, WM, a bright outlier
    out = invert_foreground(image, threshold=0.05)
    assert out.shape == image.shape
    assert torch.equal(out[..., :2], image[..., :2])  # air untouched
    np.testing.assert_allclose(out[..., 2:].flatten().numpy(), [0.85, 0.55, 0.15, 0.05], atol=1e-6)
    # T1 order CSF < GM < WM becomes CSF > GM > WM, every head voxel still at or above the threshold
    assert out[..., 2] > out[..., 3] > out[..., 4] >= 0.05


def test_invert_foreground_refuses_a_threshold_outside_the_unit_interval():
    with pytest.raises(ValueError, match="threshold"):
        invert_foreground(torch.zeros(1, 2, 2, 2), threshold=1.0)
    with pytest.raises(ValueError, match="threshold"):
        RandContrastInversiond("image", threshold=-0.1)


def test_rand_contrast_inversion_applies_with_its_probability_and_leaves_labels():
    data = {"image": torch.linspace(0, 1, 64).reshape(1, 4, 4, 4), "label": torch.ones(1, 4, 4, 4)}
    always = RandContrastInversiond("image", prob=1.0)(data)
    assert torch.equal(always["image"], invert_foreground(data["image"]))
    assert always["label"] is data["label"]
    assert torch.equal(RandContrastInversiond("image", prob=0.0)(data)["image"], data["image"])
    transform = RandContrastInversiond("image", prob=0.5)
    transform.set_random_state(seed=0)
    flips = [not torch.equal(transform(data)["image"], data["image"]) for _ in range(200)]
    assert 70 < sum(flips) < 130


def test_largest_component_keeps_the_biggest_blob_and_fills_its_holes():
    mask = np.zeros((12, 12, 12), dtype=np.uint8)
    mask[1:8, 1:8, 1:8] = 1
    mask[4, 4, 4] = 0  # a hole (a ventricle missed)
    mask[10:12, 10:12, 10:12] = 1  # a blob in the neck
    out = largest_component_filled(mask)
    assert out.dtype == bool and out.sum() == 7**3 and out[4, 4, 4] and not out[11, 11, 11]
    assert not largest_component_filled(np.zeros((4, 4, 4))).any()
    with pytest.raises(ValueError, match=r"\(H, W, D\)"):
        largest_component_filled(np.zeros((1, 4, 4, 4)))


def test_largest_component_dict_keeps_meta_and_checks_the_shape():
    mask = torch.zeros(1, 6, 6, 6)
    mask[0, :3, :3, :3] = 1
    mask[0, 5, 5, 5] = 1
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    out = LargestComponentd("pred")({"pred": MetaTensor(mask, affine=affine)})["pred"]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine.double())
    assert out.dtype == mask.dtype and out.sum() == 27 and out[0, 5, 5, 5] == 0
    with pytest.raises(ValueError, match="'pred'.*\\(1, H, W, D\\)"):
        LargestComponentd("pred")({"pred": torch.zeros(2, 4, 4, 4)})
