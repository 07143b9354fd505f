"""Radial error between predicted and reference landmarks, and its cumulative mean (MRE) in mm."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = ["MeanRadialErrorMetric", "compute_radial_error"]


def compute_radial_error(
    y_pred: torch.Tensor, y: torch.Tensor, spacing: Sequence[float] | torch.Tensor | None = None
) -> torch.Tensor:
    """Euclidean distance between corresponding points.

    Args:
        y_pred: (B, N, S) predicted points, S spatial coordinates each.
        y: (B, N, S) reference points (moved to ``y_pred``'s device); a point with any non-finite coordinate is
            "not annotated".
        spacing: None when the points are world coordinates in mm. For voxel coordinates, the voxel size in mm
            per axis, (S,) or per case (B, S); coordinate differences are scaled by it before the norm.

    Returns:
        (B, N) float distances in mm: NaN where the reference is not annotated (MONAI reductions skip NaN), +inf where
        the reference is annotated but the prediction is not finite (a failed prediction counts as infinitely wrong
        rather than disappearing from the mean).
    """
    if y_pred.shape != y.shape or y.dim() != 3:
        raise ValueError(f"y_pred and y must both be (B, N, S); got {tuple(y_pred.shape)} and {tuple(y.shape)}")
    y = y.to(y_pred.device)
    diff = y_pred.double() - y.double()
    if spacing is not None:
        scale = torch.as_tensor(spacing, dtype=torch.float64, device=diff.device)
        if scale.shape[-1] != y.shape[-1] or scale.dim() > 2:
            raise ValueError(f"spacing must be (S,) or (B, S) with S={y.shape[-1]}; got {tuple(scale.shape)}")
        diff = diff * (scale[:, None, :] if scale.dim() == 2 else scale)
    distance = torch.linalg.vector_norm(torch.nan_to_num(diff, nan=0.0, posinf=0.0, neginf=0.0), dim=-1)
    annotated = torch.isfinite(y).all(-1)
    predicted = torch.isfinite(y_pred).all(-1)
    distance = torch.where(predicted, distance, torch.full_like(distance, torch.inf))
    return torch.where(annotated, distance, torch.full_like(distance, torch.nan)).float()


class MeanRadialErrorMetric(CumulativeIterationMetric):
    """Mean radial error (MRE): distance between predicted and reference landmarks, accumulated over iterations.

    Call with batch-first tensors (B, N, S) or lists of (N, S) tensors, once per iteration; ``aggregate()`` reduces
    everything seen since the last ``reset()``. ``get_buffer()`` holds the (cases, N) distances (NaN: reference not
    annotated).

    Args:
        spacing: None for world coordinates in mm; voxel size (S,) to report voxel-coordinate errors in mm.
        reduction: MONAI reduction over the (cases, N) distances, NaN-aware: "mean" (default) averages each case over
            its annotated landmarks and then over cases, "mean_batch" gives one MRE per landmark, "none" returns the
            distances. With no annotated point at all the mean is 0 and ``not_nans`` is 0.
        get_not_nans: return ``(value, not_nans)`` from ``aggregate``.
    """

    def __init__(
        self,
        spacing: Sequence[float] | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        self.spacing = spacing
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return compute_radial_error(torch.as_tensor(y_pred), torch.as_tensor(y), self.spacing)

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered (cases, N) distances; see the class docstring."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"nothing to aggregate: the buffer is {type(data).__name__}; call the metric first")
        value, not_nans = do_metric_reduction(data.clone(), reduction or self.reduction)
        return (value, not_nans) if self.get_not_nans else value
