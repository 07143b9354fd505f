"""BraTS labels <-> (WT, TC, ET) regions, and the case-named output files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from nnmamba_monai.transforms import (
    BRATS_REGIONS,
    BratsLabelsToRegions,
    BratsLabelsToRegionsd,
    BratsRegionsToLabels,
    BratsRegionsToLabelsd,
    brats_case_name,
)


def label_row(*values: int) -> torch.Tensor:
    """A (1, N, 1, 1) label map holding ``values`` along H."""
    return torch.tensor(values, dtype=torch.float32).reshape(1, len(values), 1, 1)


@pytest.mark.parametrize(
    ("et_label", "expected_for_values"),
    [
        # value -> (WT, TC, ET)
        (3, {0: (0, 0, 0), 1: (1, 1, 0), 2: (1, 0, 0), 3: (1, 1, 1)}),
        (4, {0: (0, 0, 0), 1: (1, 1, 0), 2: (1, 0, 0), 4: (1, 1, 1)}),
    ],
)
def test_labels_to_regions_per_value(et_label, expected_for_values):
    values = list(expected_for_values)
    regions = BratsLabelsToRegions(et_label=et_label)(label_row(*values))
    assert regions.shape == (3, len(values), 1, 1)
    assert BRATS_REGIONS == ("WT", "TC", "ET")
    for index, value in enumerate(values):
        assert tuple(regions[:, index, 0, 0].tolist()) == expected_for_values[value], f"label {value}"


def test_old_et_value_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match=r"values 4 besides .* BraTS 2018-2022 used 4 \(set et_label\)"):
        BratsLabelsToRegions(et_label=3)(label_row(0, 1, 2, 4))


@pytest.mark.parametrize("bad", [0, 1, 2])
def test_et_label_must_not_clash(bad):
    with pytest.raises(ValueError, match="et_label must differ"):
        BratsLabelsToRegions(et_label=bad)


def test_round_trip_restores_challenge_labels():
    rng = np.random.default_rng(0)
    labels = torch.as_tensor(rng.choice([0, 1, 2, 3], size=(1, 12, 10, 8)), dtype=torch.float32)
    restored = BratsRegionsToLabels()(BratsLabelsToRegions()(labels))
    assert restored.dtype == torch.uint8
    assert torch.equal(restored.to(torch.float32), labels)


def test_inner_region_wins_where_prediction_is_not_nested():
    # voxel 0: ET only (outside predicted TC/WT) -> ET; voxel 1: TC only -> NCR; voxel 2: WT only -> ED; 3: none
    regions = torch.tensor([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float32).reshape(3, 4, 1, 1)
    assert BratsRegionsToLabels(et_label=3)(regions).flatten().tolist() == [3, 1, 2, 0]
    assert BratsRegionsToLabels(et_label=4)(regions).flatten().tolist() == [4, 1, 2, 0]


def test_probabilities_are_thresholded():
    regions = torch.full((3, 2, 1, 1), 0.4)
    regions[:, 1] = 0.6
    assert BratsRegionsToLabels()(regions).flatten().tolist() == [0, 3]


def test_regions_to_labels_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"expects regions of shape \(3, H, W, D\)"):
        BratsRegionsToLabels()(torch.zeros(4, 2, 2, 2))


def test_numpy_in_numpy_out():
    regions = BratsLabelsToRegions()(np.array([0, 1, 2, 3], dtype=np.uint8).reshape(1, 4, 1, 1))
    assert isinstance(regions, np.ndarray) and regions.shape == (3, 4, 1, 1)
    labels = BratsRegionsToLabels()(regions)
    assert isinstance(labels, np.ndarray) and labels.flatten().tolist() == [0, 1, 2, 3]


def test_dict_versions_keep_metadata_and_can_write_new_keys():
    affine = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    label = MetaTensor(label_row(0, 1, 2, 3), affine=affine)
    data = BratsLabelsToRegionsd(keys="label")({"label": label})
    assert isinstance(data["label"], MetaTensor) and torch.equal(data["label"].affine, affine)
    out = BratsRegionsToLabelsd(keys="label", output_keys="label_map")(data)
    assert out["label"].shape[0] == 3, "regions kept under the input key"
    assert out["label_map"].flatten().tolist() == [0, 1, 2, 3]
    assert torch.equal(out["label_map"].affine, affine)


def test_case_name_formatter_names_outputs_by_case():
    meta = {"filename_or_obj": "/data/BraTS-GLI-00042-001/BraTS-GLI-00042-001-t1n.nii.gz"}
    assert brats_case_name(meta, None) == {"subject": "BraTS-GLI-00042-001", "idx": None}
    assert brats_case_name({"filename_or_obj": "/x/scan.nii.gz", "patch_index": 3})["subject"] == "scan"
