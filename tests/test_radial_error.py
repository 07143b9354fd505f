"""Mean radial error: known values in mm, anisotropic voxels, missing points, accumulation, ignite handler."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine

from nnmamba_monai.handlers import MeanRadialError
from nnmamba_monai.metrics import MeanRadialErrorMetric, compute_radial_error

NAN = float("nan")


def test_known_distances_in_world_mm():
    y = torch.zeros(2, 3, 3)
    y_pred = torch.tensor([[[3.0, 4.0, 0.0], [0, 0, 0], [1, 2, 2]], [[0, 0, 5.0], [6, 0, 8], [0, 0, 0]]])
    torch.testing.assert_close(compute_radial_error(y_pred, y), torch.tensor([[5.0, 0.0, 3.0], [5.0, 10.0, 0.0]]))


def test_voxel_coordinates_with_anisotropic_spacing():
    y = torch.zeros(1, 2, 3)
    y_pred = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 0.0, 2.0]]])  # voxels of 3 x 4 x 0.5 mm
    distances = compute_radial_error(y_pred, y, spacing=(3.0, 4.0, 0.5))
    torch.testing.assert_close(distances, torch.tensor([[math.sqrt(9 + 16 + 0.25), 1.0]]))
    per_case = compute_radial_error(torch.ones(2, 1, 3), torch.zeros(2, 1, 3), spacing=[[1.0, 0, 0], [0, 2.0, 0]])
    torch.testing.assert_close(per_case, torch.tensor([[1.0], [2.0]]))


def test_missing_references_are_skipped_and_failed_predictions_are_infinite():
    y = torch.tensor([[[0.0, 0.0, 0.0], [NAN, NAN, NAN], [0.0, 0.0, 0.0]]])
    y_pred = torch.tensor([[[3.0, 4.0, 0.0], [1.0, 1.0, 1.0], [NAN, 0.0, 0.0]]])
    distances = compute_radial_error(y_pred, y)
    assert distances[0, 0] == 5.0 and math.isnan(distances[0, 1]) and math.isinf(distances[0, 2])
    metric = MeanRadialErrorMetric()
    metric(y_pred[:, :2], y[:, :2])
    assert metric.aggregate().item() == 5.0  # the unannotated point does not turn the mean into NaN


def test_accumulates_over_batches_and_resets():
    metric = MeanRadialErrorMetric(get_not_nans=True)
    metric(torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]]), torch.zeros(1, 2, 3))  # case mean 3
    metric([torch.tensor([[0.0, 0.0, 9.0], [0.0, 0.0, 7.0]])], [torch.zeros(2, 3)])  # list input; case mean 8
    value, not_nans = metric.aggregate()
    assert value.item() == pytest.approx(5.5) and not_nans.item() == 2
    torch.testing.assert_close(metric.aggregate("mean_batch")[0], torch.tensor([7.0, 4.0]))  # per landmark
    assert metric.get_buffer().shape == (2, 2)
    metric.reset()
    metric(torch.ones(1, 1, 3), torch.ones(1, 1, 3))
    assert metric.aggregate()[0].item() == 0.0
    empty = MeanRadialErrorMetric()
    empty(torch.zeros(1, 2, 3), torch.full((1, 2, 3), NAN))
    assert empty.aggregate().item() == 0.0  # nothing annotated: 0 with not_nans 0, never NaN


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(B, N, S\)"):
        compute_radial_error(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="spacing"):
        compute_radial_error(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), spacing=(1.0, 1.0))


def test_ignite_handler_reports_the_epoch_mean_and_per_case_details():
    batches = [
        {"pred_landmarks": torch.tensor([[[3.0, 4.0, 0.0]]]), "label_landmarks": torch.zeros(1, 1, 3)},
        {
            "pred_landmarks": torch.tensor([[[0.0, 0.0, 1.0]], [[0.0, 2.0, 0.0]]]),
            "label_landmarks": torch.zeros(2, 1, 3),
        },
    ]
    engine = Engine(lambda engine, batch: batch)
    handler = MeanRadialError(output_transform=lambda out: (out["pred_landmarks"], out["label_landmarks"]))
    handler.attach(engine, "val_mre")
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["val_mre"] == pytest.approx((5.0 + 1.0 + 2.0) / 3)
    torch.testing.assert_close(engine.state.metric_details["val_mre"], torch.tensor([[5.0], [1.0], [2.0]]))
    engine.run(batches[:1], max_epochs=2)  # a new run starts from an empty buffer
    assert engine.state.metrics["val_mre"] == pytest.approx(5.0)
