"""Heatmap decoding: sub-voxel peaks and voxel-to-world mapping; the bundle transform on one case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from nnmamba_monai.landmarks import HeatmapToWorldLandmarksd, heatmap_peaks, voxel_to_world


def gaussian(shape, centre, sigma) -> torch.Tensor:
    """Anisotropic Gaussian (peak 1) at a non-integer voxel ``centre``; float32 tensor of ``shape``."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    values = np.exp(-(((grid - np.asarray(centre)) / np.asarray(sigma)) ** 2).sum(-1) / 2)
    return torch.as_tensor(values, dtype=torch.float32)


CENTRES_3D = [(7.3, 12.71, 5.45), (10.5, 3.02, 14.9), (1.2, 20.6, 9.0)]


def test_quadratic_refinement_is_exact_for_gaussians_at_non_integer_positions():
    shape = (20, 24, 18)
    heatmaps = torch.stack([gaussian(shape, c, (2.0, 1.5, 2.5)) for c in CENTRES_3D])[None]  # (1, 3, H, W, D)
    peaks = heatmap_peaks(heatmaps, refine="quadratic")
    assert peaks.shape == (1, 3, 3) and peaks.dtype == torch.float64
    np.testing.assert_allclose(peaks[0].numpy(), np.array(CENTRES_3D), atol=1e-3)


def test_refinements_beat_the_plain_argmax():
    centre = (7.3, 12.71, 5.45)
    heatmaps = gaussian((20, 24, 18), centre, 2.0)[None, None]
    error = {
        refine: np.abs(heatmap_peaks(heatmaps, refine=refine, radius=3)[0, 0].numpy() - centre).max()
        for refine in ("none", "quadratic", "centroid")
    }
    assert error["none"] == pytest.approx(0.45, abs=1e-6)  # nearest voxel
    assert error["centroid"] < 0.15
    assert error["quadratic"] < 1e-3


def test_two_dimensional_and_batched():
    maps = torch.stack([torch.stack([gaussian((16, 20), (3.25, 17.6), 1.5), gaussian((16, 20), (9.0, 2.4), 1.5)])] * 2)
    peaks = heatmap_peaks(maps)
    assert peaks.shape == (2, 2, 2)
    np.testing.assert_allclose(peaks[1].numpy(), [[3.25, 17.6], [9.0, 2.4]], atol=1e-3)


def test_peak_on_the_border_and_degenerate_maps_stay_finite():
    border = gaussian((10, 10, 10), (0.0, 4.3, 9.0), 1.5)[None, None]
    np.testing.assert_allclose(heatmap_peaks(border)[0, 0].numpy(), [0.0, 4.3, 9.0], atol=1e-3)
    flat = torch.zeros(1, 2, 8, 8, 8)
    nan = torch.full((1, 1, 8, 8, 8), float("nan"))
    negative = -gaussian((8, 8, 8), (3.4, 4.0, 5.0), 1.0)[None, None] - 1  # a network output below zero
    for maps in (flat, nan, negative):
        for refine in ("none", "quadratic", "centroid"):
            assert torch.isfinite(heatmap_peaks(maps, refine=refine)).all()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="refine"):
        heatmap_peaks(torch.zeros(1, 1, 4, 4, 4), refine="softargmax")
    with pytest.raises(ValueError, match=r"\(B, N, \*spatial\)"):
        heatmap_peaks(torch.zeros(4, 4, 4))
    with pytest.raises(ValueError, match="affine"):
        voxel_to_world(torch.zeros(1, 3), torch.eye(3))


def test_voxel_to_world_follows_the_affine_batched_and_not():
    affine = torch.tensor([[0.0, 0.0, -1.5, 40.0], [0.8, 0.0, 0.0, -20.0], [0.0, 1.2, 0.0, 10.0], [0, 0, 0, 1.0]])
    points = torch.tensor([[0.0, 0.0, 0.0], [10.0, 5.0, 2.0]])
    expected = torch.tensor([[40.0, -20.0, 10.0], [40.0 - 3.0, -20.0 + 8.0, 10.0 + 6.0]], dtype=torch.float64)
    torch.testing.assert_close(voxel_to_world(points, affine), expected)
    batched = voxel_to_world(torch.stack([points, points]), torch.stack([affine, torch.eye(4)]))
    torch.testing.assert_close(batched[1], points.double())


def test_transform_maps_heatmaps_to_world_with_the_reference_image_affine():
    affine = torch.tensor([[0.0, 0.0, -1.5, 40.0], [0.8, 0.0, 0.0, -20.0], [0.0, 1.2, 0.0, 10.0], [0, 0, 0, 1.0]])
    shape = (16, 20, 12)
    centres = np.array([(4.3, 12.2, 6.6), (10.7, 3.5, 2.25)])
    data = {
        "pred": torch.stack([gaussian(shape, c, 1.5) for c in centres]),  # plain tensor, as PlainTensorInferer gives
        "image": MetaTensor(torch.zeros(1, *shape), affine=affine),
    }
    out = HeatmapToWorldLandmarksd(keys="pred", ref_image_keys="image", output_keys="pred_landmarks")(data)
    expected = centres @ affine[:3, :3].numpy().T + affine[:3, 3].numpy()
    assert out["pred_landmarks"].shape == (2, 3) and out["pred_landmarks"].dtype == torch.float32
    np.testing.assert_allclose(out["pred_landmarks"].numpy(), expected, atol=1e-3)
    with pytest.raises(ValueError, match="MetaTensor with an affine"):
        HeatmapToWorldLandmarksd(keys="pred", ref_image_keys=None)(data)
