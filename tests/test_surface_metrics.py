"""HD95 and NSD in millimetres (spacing from the affine), the empty-structure convention, MetaTensor inputs."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data import MetaTensor

from nnmamba_monai import nnMambaSeg
from nnmamba_monai.metrics import SpacingAwareHausdorffDistanceMetric, SpacingAwareSurfaceDiceMetric, voxel_spacing

SPACING = (0.8, 0.8, 2.5)
AFFINE = torch.tensor(
    [[-SPACING[0], 0, 0, 10.0], [0, -SPACING[1], 0, 5.0], [0, 0, SPACING[2], -3.0], [0, 0, 0, 1]], dtype=torch.float64
)


def cube_pair(shift_axis: int, shift: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot (1, 2, 16, 16, 16) ground truth cube and the same cube shifted along ``shift_axis``."""
    truth = torch.zeros(1, 2, 16, 16, 16)
    truth[:, 1, 4:10, 4:10, 4:10] = 1
    pred = torch.roll(truth, shifts=shift, dims=2 + shift_axis)
    for onehot in (truth, pred):
        onehot[:, 0] = 1 - onehot[:, 1]
    return MetaTensor(pred, affine=AFFINE), MetaTensor(truth, affine=AFFINE)


def test_voxel_spacing_is_positive_for_flipped_axes():
    image = MetaTensor(torch.zeros(2, 1, 4, 4, 4), affine=AFFINE)
    assert voxel_spacing(image) == [pytest.approx(list(SPACING))] * 2
    assert voxel_spacing(torch.zeros(1, 1, 4, 4, 4)) is None


@pytest.mark.parametrize("axis", [0, 2])
def test_hd95_is_in_millimetres(axis):
    pred, truth = cube_pair(axis)
    metric = SpacingAwareHausdorffDistanceMetric(include_background=False, percentile=95)
    assert metric(pred, truth).item() == pytest.approx(SPACING[axis])


def test_decollated_lists_keep_their_spacing():
    pred, truth = cube_pair(2)
    metric = SpacingAwareHausdorffDistanceMetric(include_background=False, percentile=95)
    metric([pred[0]], [truth[0]])
    assert metric.aggregate().item() == pytest.approx(SPACING[2])


def test_empty_structures_follow_the_brats_convention():
    _, truth = cube_pair(0)
    empty = torch.zeros_like(truth)
    empty[:, 0] = 1
    metric = SpacingAwareHausdorffDistanceMetric(include_background=False, percentile=95, empty_distance=373.13)
    assert metric(empty, truth).item() == pytest.approx(373.13), "missed structure"
    assert metric(truth, empty).item() == pytest.approx(373.13), "false positive structure"
    assert metric(empty, empty).item() == 0.0, "absent and not predicted"
    monai_default = SpacingAwareHausdorffDistanceMetric(include_background=False, percentile=95)
    assert math.isnan(monai_default(empty, truth).item())


def test_nsd_tolerance_is_in_millimetres():
    pred, truth = cube_pair(2)  # surfaces 2.5 mm apart along the third axis
    tight = SpacingAwareSurfaceDiceMetric(class_thresholds=[1.0], include_background=False)
    loose = SpacingAwareSurfaceDiceMetric(class_thresholds=[2.5], include_background=False)
    assert 0.0 < tight(pred, truth).item() < 1.0
    assert loose(pred, truth).item() == pytest.approx(1.0)


def test_bare_network_accepts_meta_tensors_and_ignores_their_metadata():
    # MONAI engines and MONAI Label feed MetaTensor batches straight to network_def
    torch.manual_seed(0)
    net = nnMambaSeg(3, 1, 2, channels=4, out_relu=False).eval()
    plain = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        from_meta = net(MetaTensor(plain.clone(), affine=AFFINE))
        from_plain = net(plain)
    assert from_meta.shape == (1, 2, 16, 16, 16)
    assert torch.equal(torch.as_tensor(from_meta), from_plain)


def test_mean_hd95_of_empty_predictions_is_missing_not_zero_mm():
    _, truth = cube_pair(0)
    empty = torch.zeros_like(truth)
    empty[:, 0] = 1
    metric = SpacingAwareHausdorffDistanceMetric(include_background=False, percentile=95)
    metric(empty, truth)
    metric(empty, truth)
    # MONAI's reduction averages nothing to 0 mm, which reads as a perfect score
    assert math.isnan(metric.aggregate().item())
    metric.reset()
    metric(truth, truth)
    metric(empty, truth)
    assert metric.aggregate().item() == pytest.approx(0.0), "the NaN case is left out, the other counts"


def test_empty_structure_warnings_collapse_into_one_line(caplog, recwarn):
    _, truth = cube_pair(0)
    empty = torch.zeros_like(truth)
    empty[:, 0] = 1
    for metric in (
        SpacingAwareHausdorffDistanceMetric(include_background=False, percentile=95),
        SpacingAwareSurfaceDiceMetric(class_thresholds=[2.0], include_background=False),
    ):
        caplog.clear()
        with caplog.at_level("WARNING", logger="nnmamba_monai.metrics.spacing_aware"):
            for _ in range(5):
                metric(empty, truth)
            metric.aggregate()
            metric.aggregate()  # counted once: the second has nothing new to report
        assert not [w for w in recwarn if "is all 0" in str(w.message)]
        (record,) = caplog.records
        assert "5 with an empty prediction" in record.getMessage()
