"""Contrast augmentation: foreground inversion (T2-like contrast from T1), random intensity curves and their
two-region version (one curve inside a mask, another outside): values, background kept, metadata, randomness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from nnmamba_monai.transforms import (
    IntensityCurve,
    IntensityInversion,
    RandIntensityCurve,
    RandIntensityCurved,
    RandIntensityInversion,
    RandIntensityInversiond,
    RandRegionIntensityCurved,
)


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


def test_intensity_curve_values_background_and_special_cases():
    image = torch.tensor([[0.0, 0.05, 0.1, 0.325, 0.55, 0.775, 1.0]])  # threshold 0.1, span 0.9
    out = IntensityCurve((0.0, 1.0, 0.5), background_fraction=0.1)(image)
    # u = 0.25 -> 0.5, u = 0.5 -> 1.0, u = 0.75 -> 0.75, u = 1 -> 0.5; output = 0.1 + curve * 0.9; air kept
    np.testing.assert_allclose(out.numpy(), [[0.0, 0.05, 0.1, 0.55, 1.0, 0.775, 0.55]], atol=1e-6)
    integers = IntensityCurve((0.0, 1.0, 0.5), background_fraction=0.1)(torch.tensor([[0, 5, 10, 33, 55, 78, 100]]))
    np.testing.assert_allclose(integers.numpy(), [[0.0, 5.0, 10.0, 56.0, 100.0, 77.0, 55.0]], atol=1e-4)
    ramp = torch.linspace(0, 1, 11)[None]
    np.testing.assert_allclose(IntensityCurve((0.0, 1.0), 0.05)(ramp).numpy(), ramp.numpy(), atol=1e-6)  # identity
    np.testing.assert_allclose(
        IntensityCurve((1.0, 0.0), 0.05)(ramp).numpy(), IntensityInversion(0.05)(ramp).numpy(), atol=1e-6
    )


def test_intensity_curve_reorders_t1_tissues_like_a_t2_and_keeps_metadata():
    # T1 scaled to [0, 1]: air, CSF, grey, white matter
    image = MetaTensor(
        torch.tensor([0.02, 0.35, 0.6, 0.85, 1.0]).view(1, 5, 1, 1), affine=torch.diag(torch.tensor([2.0, 2, 2, 1]))
    )
    out = IntensityCurve((0.0, 1.0, 0.5, 0.4), background_fraction=0.05)(image)
    air, csf, grey, white, _ = out.view(-1)
    assert air == pytest.approx(0.02, abs=1e-6) and white < grey < csf  # not reachable by a monotonic transform
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, image.affine)


def test_random_curves_are_mostly_non_monotonic_seeded_and_shared_by_keys():
    ramp = torch.linspace(0, 1, 64).view(1, 64, 1, 1)
    transform = RandIntensityCurved(keys=["a", "b"], prob=1.0, num_control_points=(3, 5), background_fraction=0.0)
    transform.set_random_state(seed=3)
    outputs = [transform({"a": ramp, "b": ramp.clone()}) for _ in range(30)]
    assert all(torch.equal(o["a"], o["b"]) for o in outputs)  # one curve for every key
    non_monotonic = [bool((o["a"].diff(dim=1) < 0).any() and (o["a"].diff(dim=1) > 0).any()) for o in outputs]
    assert sum(non_monotonic) > 15
    assert all(0.0 <= o["a"].min() and o["a"].max() <= 1.0 for o in outputs)
    again = RandIntensityCurved(keys=["a", "b"], prob=1.0, num_control_points=(3, 5), background_fraction=0.0)
    again.set_random_state(seed=3)
    assert torch.equal(again({"a": ramp, "b": ramp})["a"], outputs[0]["a"])  # the seed fixes the curves
    never = RandIntensityCurve(prob=0.0)
    assert never(ramp) is ramp


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": (0.5,)}, "levels must be at least two values"),
        ({"levels": (0.0, 1.5)}, "levels must be at least two values"),
        ({"levels": (0.0, 1.0), "background_fraction": 1.0}, "background_fraction must be in"),
    ],
)
def test_invalid_curves_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IntensityCurve(**kwargs)
    if "background_fraction" not in kwargs:
        return
    with pytest.raises(ValueError, match=message):
        RandIntensityCurve(background_fraction=kwargs["background_fraction"])


def test_random_curve_refuses_fewer_than_two_control_points():
    with pytest.raises(ValueError, match="num_control_points must be"):
        RandIntensityCurve(num_control_points=(1, 4))


def _head_with_a_brain() -> dict[str, torch.Tensor]:
    """A 32^3 'head': air around a cube of tissue whose intensities ramp from 0.2 to 1 along the first axis; the
    'brain' label is the inner 16^3 block (8:24), so the same intensities occur inside and outside it."""
    image = torch.zeros(1, 32, 32, 32)
    image[:, 2:30, 2:30, 2:30] = torch.linspace(0.2, 1.0, 28).view(1, 28, 1, 1)
    label = torch.zeros(1, 32, 32, 32)
    label[:, 8:24, 8:24, 8:24] = 1
    return {"image": image, "label": label, "other": image.clone()}


def test_region_curves_map_inside_and_outside_the_mask_separately_and_keep_the_air():
    data = _head_with_a_brain()
    transform = RandRegionIntensityCurved(keys=["image", "other"], prob=1.0, sigma=(0.0, 0.0), background_fraction=0.05)
    transform.set_random_state(seed=0)
    out = transform(data)
    inside = IntensityCurve(transform.inside.levels, 0.05)(data["image"])
    outside = IntensityCurve(transform.outside.levels, 0.05)(data["image"])
    brain = data["label"] > 0
    assert torch.allclose(out["image"][brain], inside[brain]) and torch.allclose(out["image"][~brain], outside[~brain])
    assert torch.equal(out["image"][data["image"] == 0], data["image"][data["image"] == 0])  # air kept
    assert torch.equal(out["image"], out["other"])  # the same two curves for every key
    assert torch.equal(out["label"], data["label"])
    assert transform.inside.levels != transform.outside.levels


def test_region_curves_unlink_brain_and_non_brain_of_the_same_intensity():
    transform = RandRegionIntensityCurved(keys="image", prob=1.0, sigma=(0.0, 0.0)).set_random_state(seed=1)
    differing = 0
    for _ in range(20):
        out = transform(_head_with_a_brain())["image"]
        # row 16 of the tissue ramp: the same input intensity inside the brain (16, 16, 16) and outside (16, 3, 3)
        differing += bool(abs(out[0, 16, 16, 16] - out[0, 16, 3, 3]) > 0.05)
    assert differing >= 15


def test_region_curves_soften_the_seam_and_are_seeded():
    data = _head_with_a_brain()
    hard = RandRegionIntensityCurved(keys="image", prob=1.0, sigma=(0.0, 0.0)).set_random_state(seed=2)(data)
    soft_transform = RandRegionIntensityCurved(keys="image", prob=1.0, sigma=(1.5, 1.5)).set_random_state(seed=2)
    soft = soft_transform(data)
    assert soft_transform.sigma == 1.5
    # same seed, same curves: deep inside and far outside the mask the two agree; at the border they blend
    assert torch.allclose(soft["image"][0, 16, 16, 16], hard["image"][0, 16, 16, 16], atol=1e-4)
    assert torch.allclose(soft["image"][0, 16, 3, 3], hard["image"][0, 16, 3, 3], atol=1e-4)
    low, high = sorted((hard["image"][0, 16, 8, 16].item(), hard["image"][0, 16, 7, 16].item()))
    assert low - 1e-5 <= soft["image"][0, 16, 8, 16].item() <= high + 1e-5
    assert not torch.allclose(soft["image"][0, 16, 8, 16], hard["image"][0, 16, 8, 16], atol=1e-3)
    never = RandRegionIntensityCurved(keys="image", prob=0.0)
    assert never(data)["image"] is data["image"]


def test_region_curves_name_a_missing_mask_a_shape_mismatch_and_a_bad_sigma():
    data = _head_with_a_brain()
    with pytest.raises(KeyError, match="mask key 'brain'"):
        RandRegionIntensityCurved(keys="image", mask_key="brain", prob=1.0)(data)
    data["label"] = data["label"][:, :12]
    with pytest.raises(ValueError, match=r"'image' has shape \(1, 32, 32, 32\) .* mask 'label' has \(1, 12, 32, 32\)"):
        RandRegionIntensityCurved(keys="image", prob=1.0)(data)
    data["label"] = torch.zeros(2, 32, 32, 32)  # one-hot: two channels for a one-channel image
    with pytest.raises(ValueError, match=r"mask 'label' has \(2, 32, 32, 32\): it needs the same spatial shape"):
        RandRegionIntensityCurved(keys="image", prob=1.0)(data)
    with pytest.raises(ValueError, match="sigma must be"):
        RandRegionIntensityCurved(keys="image", sigma=(2.0, 1.0))
