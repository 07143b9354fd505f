"""Contrast inversion (T1 -> T2/PD-like augmentation) and the largest-component mask clean-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from nnmamba_monai.transforms import (
    LargestComponentd,
    RandIntensityInversiond,
    largest_component_filled,
)


def test_intensity_inversion_reverses_tissue_order_and_keeps_air_as_brain_extraction_uses_it():
    # an image scaled to [0, 1] as the brain-extraction bundle scales it: air, air, CSF, GM, WM, brightest voxel
    image = torch.tensor([[[[0.0, 0.02, 0.2, 0.5, 0.9, 1.0]]]])
    out = RandIntensityInversiond("image", prob=1.0, background_fraction=0.05)({"image": image})["image"]
    assert torch.equal(out[..., :2], image[..., :2])  # air untouched
    np.testing.assert_allclose(out[..., 2:].flatten().numpy(), [0.85, 0.55, 0.15, 0.05], atol=1e-6)
    # T1 order CSF < GM < WM becomes CSF > GM > WM, every head voxel still above the air
    assert out[..., 2] > out[..., 3] > out[..., 4] >= 0.05


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
