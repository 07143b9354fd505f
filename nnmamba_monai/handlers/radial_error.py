"""Ignite handler for the mean radial error, in the style of MONAI's metric handlers (e.g. ``MeanDice``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.utils import MetricReduction

from nnmamba_monai.metrics import MeanRadialErrorMetric

__all__ = ["MeanRadialError"]


class MeanRadialError(IgniteMetricHandler):
    """Mean radial error (mm) of landmark coordinates, accumulated over an engine's epoch.

    Args:
        spacing: None for world coordinates in mm; voxel size (S,) for voxel coordinates.
        reduction: see :class:`nnmamba_monai.metrics.MeanRadialErrorMetric` ("mean": one number).
        output_transform: extracts ``(y_pred, y)`` from ``engine.state.output``: batch-first (B, N, S) tensors or
            lists of (N, S) tensors, e.g. ``from_engine(["pred_landmarks", "label_landmarks"])``.
        save_details: store the per-case, per-landmark distances in ``engine.state.metric_details`` (for
            ``MetricsSaver``).
    """

    def __init__(
        self,
        spacing: Sequence[float] | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        metric_fn = MeanRadialErrorMetric(spacing=spacing, reduction=reduction)
        super().__init__(metric_fn=metric_fn, output_transform=output_transform, save_details=save_details)
